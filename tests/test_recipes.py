"""Recipes: per-dataset, per-method, per-ratio unlearning hyperparameters, and the rule that a
value given in params.yaml always wins over the recipe."""

import pytest

from grmu import GrmuError
from grmu.cli import main
from grmu.config import load_params, validate
from grmu.methods import get_method, list_methods
from grmu.recipes import UNLEARN_DEFAULTS, available, resolve
from tests._repo import merge
from tests.conftest import repo_params


def params(**over) -> dict:
    return validate(merge(repo_params(), over))


def settings(ratio=0.5, **over):
    p = params(**{"method": "miu", **over})
    return resolve(p, get_method(p["method"]).options, ratio)


def test_every_paper_dataset_has_a_recipe():
    assert {"celeba", "waterbirds", "fairface", "multinli", "colored_mnist"} <= set(available())


def test_params_value_beats_recipe_beats_default():
    # colored_mnist recipe sets unlearn.epochs and MIU's tune steps; params.yaml leaves them null
    s = settings(unlearn={"epochs": None, "lr": 0.123}, methods={"miu": {"tune_steps": None}})
    assert s["recipe"] == "colored_mnist"
    assert s["unlearn"]["lr"] == 0.123 and s["source"]["unlearn.lr"] == "params"
    assert s["source"]["unlearn.epochs"] == "recipe" and s["unlearn"]["epochs"] != UNLEARN_DEFAULTS["epochs"]
    assert s["source"]["methods.miu.tune_steps"] == "recipe"
    assert s["source"]["methods.miu.ema_alpha"] == "default"
    off = settings(recipe="none", unlearn={"epochs": None})
    assert off["recipe"] is None and off["unlearn"]["epochs"] == UNLEARN_DEFAULTS["epochs"]


def test_celeba_miu_recipe_changes_with_ratio_and_reweight():
    def miu(ratio, rw):
        s = settings(ratio, recipe="celeba", reweight=rw)
        return s["unlearn"]["lr"], s["options"]["lambda_mi"], s["unlearn"]["augment"], s["unlearn"]["batch_size"]

    assert miu(0.9, True) == (0.1, 1.0, True, 256)  # MIU+REWEIGHT r=0.9: lr 0.1, lambda 1
    assert miu(0.5, True) == (1e-3, 10.0, False, 256)
    assert miu(0.9, False) == (1e-3, 10.0, True, 256)


def test_fairface_multi_group_entries_replace_the_single_group_ones():
    base = {"method": "miu", "recipe": "fairface", "reweight": True}
    single = resolve(params(**base), get_method("miu").options, 0.5)
    p = params(**base)
    p["forget"] = {**p["forget"], "multi_group": 5}  # FairFace's 25-group forget set
    g5 = resolve(p, get_method("miu").options, 0.5)
    assert (single["unlearn"]["lr"], single["unlearn"]["schedule"], single["options"]["mine_lr"]) == (
        0.1,
        "cosine",
        1e-3,
    )
    assert (g5["unlearn"]["lr"], g5["unlearn"]["schedule"], g5["options"]["mine_lr"]) == (0.01, "const", 0.01)


def test_multinli_recipe_uses_adamw_without_weight_decay():
    s = settings(recipe="multinli", method="scrub")
    assert s["unlearn"]["optimizer"] == "adamw" and s["unlearn"]["weight_decay"] == 0.0
    assert s["unlearn"]["lr"] == 1e-6 and s["unlearn"]["batch_size"] == 32


@pytest.mark.parametrize("recipe", available())
def test_every_recipe_resolves_for_every_method_and_ratio(recipe):
    for spec in list_methods():
        for rw in (False, True):
            for ratio in (0.1, 0.5, 0.9):
                p = params(method=spec.name, reweight=rw, recipe=recipe)
                s = resolve(p, spec.options, ratio)
                assert s["unlearn"]["epochs"] >= 1 and s["unlearn"]["lr"] > 0


def test_unknown_recipe_and_unknown_option_fail_with_the_valid_ones():
    with pytest.raises(GrmuError, match=r"unknown recipe 'celebA'; valid: auto, none, .*celeba"):
        settings(recipe="celebA")
    with pytest.raises(GrmuError, match=r"unknown key 'methods.scrub.temprature'; valid keys: .*temperature"):
        settings(method="scrub", methods={"scrub": {"temprature": 2}})
    with pytest.raises(GrmuError, match=r"unlearn.optimizer 'adam' is unknown; valid: sgd, adamw"):
        params(unlearn={"optimizer": "adam"})


def test_repo_params_leave_recipe_keys_to_the_recipe():
    p = load_params("params.yaml")
    assert p["recipe"] == "auto" and p["unlearn"]["lr"] is None


def test_cli_shows_a_recipe(capsys):
    assert main(["recipes", "celeba", "--ratios", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "miu+reweight" in out and "lr=0.1" in out and "lambda_mi=1.0" in out
    assert main(["recipes", "nope"]) == 2
    assert "unknown recipe or protocol 'nope'" in capsys.readouterr().err


def test_a_recipe_can_start_from_another(tmp_path, monkeypatch):
    import grmu.recipes as R

    assert R.load_recipe("cifar100")["entries"] == R.load_recipe("cifar10")["entries"]
    monkeypatch.setattr(R, "HERE", tmp_path)
    R.load_recipe.cache_clear()
    try:
        (tmp_path / "a.yaml").write_text("entries:\n  - {unlearn: {lr: 0.5, epochs: 2}}\n")
        (tmp_path / "b.yaml").write_text("base: a\nentries:\n  - {unlearn: {lr: 0.1}}\n")
        (tmp_path / "c.yaml").write_text("bsae: a\n")
        unl, _ = R.recipe_values("b", {"method": "finetune"})
        assert unl == {"lr": 0.1, "epochs": 2}  # the base's epochs, this file's lr
        with pytest.raises(
            GrmuError, match=r"recipe c: unknown key\(s\) \['bsae'\]; valid: \['base', 'description', 'entries'\]"
        ):
            R.load_recipe("c")
    finally:
        R.load_recipe.cache_clear()
