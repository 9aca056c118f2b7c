from grmu.cli import main


def test_methods_and_datasets_are_listed(capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert out.startswith("finetune") and "remaining set" in out
    main(["datasets"])
    assert "colored_mnist" in capsys.readouterr().out


def test_report_outside_a_dvc_repo_says_so(tmp_path, capsys):
    assert main(["report", "--repo", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "is not a DVC repository" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_params_lists_every_key_with_its_default_allowed_values_and_doc(capsys):
    from grmu.cli import _value
    from grmu.methods import list_methods
    from grmu.schema import PARAMS, leaves

    assert main(["params"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    declared = list(leaves(PARAMS)) + [
        (f"methods.{m.name}.{k}", o) for m in list_methods() for k, o in m.declared.items()
    ]
    for key, option in declared:
        line = lines[key]
        assert f"  {_value(option.default)}  " in line and option.doc in line and f"[{option.type_text()}]" in line, key
    assert lines["train.lr"].split()[1] == "0.02" and "[a finite number > 0]" in lines["train.lr"]
    assert lines["methods.scrub.temperature"].split()[1] == "4.0"
    assert lines["retrain.gdro.lr"].split()[1] == "null" and "[null or a finite number > 0]" in lines["retrain.gdro.lr"]
    assert "datasets.colored_mnist.image_size" in lines
    assert main(["params", "methods.scrub"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == [
        f"methods.scrub.{k}" for k in ("temperature", "alpha", "gamma", "forgetting_epochs", "retain_batch_size")
    ]
    assert main(["params", "trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown key 'trian'") and "train" in err and len(err.strip().splitlines()) == 1
