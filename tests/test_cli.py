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
