from grmu.cli import main


def test_methods_and_datasets_are_listed(capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert out.startswith("finetune") and "remaining set" in out
    main(["datasets"])
    assert "colored_mnist" in capsys.readouterr().out
