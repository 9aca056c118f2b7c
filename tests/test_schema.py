"""The declared schema (grmu.schema): every params key and every method option is declared once
with its type, range, default and doc, and `check_params` refuses a value outside its declared
range before any stage runs, a method's options included (its own, the recipe's, a RUM step's)."""

import math

import pytest

from grmu import GrmuError
from grmu.config import validate
from grmu.methods import METHODS, checked_options, get_method, list_methods, register_method
from grmu.recipes import available as recipes
from grmu.recipes import resolve
from grmu.schema import PARAMS, Bool, Choice, Int, Number, leaves
from grmu.stages import check_params
from tests._repo import merge
from tests.conftest import repo_params


def check(tmp_path, **over):
    """Run the check_params stage in-process on the repository's params with ``over`` merged in."""
    check_params.run(validate(merge(repo_params(), over)), tmp_path / "ok")
    return (tmp_path / "ok").read_text()


def test_every_declared_default_is_inside_its_own_declaration():
    for key, option in leaves(PARAMS):
        option.check(key, option.default)
        assert option.doc, key
    for m in list_methods():
        for key, option in m.declared.items():
            option.check(f"methods.{m.name}.{key}", option.default)


def test_every_builtin_method_option_is_declared_with_a_type_and_a_doc():
    for m in list_methods():
        assert set(m.declared) == set(m.options), m.name
        for key, option in m.declared.items():
            assert option.kind != "any" and option.doc, f"methods.{m.name}.{key}"
            assert m.options[key] == option.default


@pytest.mark.parametrize(
    "method,key,value,message",
    [
        ("scrub", "temperature", 0, "methods.scrub.temperature must be a finite number > 0, got 0"),
        ("scrub", "alpha", -0.5, "methods.scrub.alpha must be a finite number >= 0, got -0.5"),
        (
            "scrub",
            "forgetting_epochs",
            -1,
            "methods.scrub.forgetting_epochs must be a non-negative integer, got -1; valid: integers >= 0",
        ),
        (
            "scrub",
            "retain_batch_size",
            0,
            "methods.scrub.retain_batch_size must be a positive integer, got 0; valid: integers >= 1",
        ),
        ("salun", "threshold", 0, "methods.salun.threshold must be a finite number > 0 and <= 1, got 0; valid: (0, 1]"),
        (
            "salun",
            "threshold",
            1.5,
            "methods.salun.threshold must be a finite number > 0 and <= 1, got 1.5; valid: (0, 1]",
        ),
        ("l1_sparse", "gamma", -1, "methods.l1_sparse.gamma must be a finite number >= 0, got -1"),
        ("miu", "mine_lr", 0, "methods.miu.mine_lr must be a finite number > 0, got 0"),
        ("miu", "ema_alpha", 1.5, "methods.miu.ema_alpha must be a finite number > 0 and <= 1, got 1.5; valid: (0, 1]"),
        ("miu", "mine_hidden", 0, "methods.miu.mine_hidden must be a positive integer, got 0; valid: integers >= 1"),
        ("miu", "marginal", "both", "methods.miu.marginal 'both' is unknown; valid: shuffle, uniform"),
        ("miu", "ablate_retain", "yes", "methods.miu.ablate_retain must be true or false, got 'yes'"),
        ("influence", "alpha", math.inf, "methods.influence.alpha must be a finite number, got inf"),
        ("influence", "fisher_samples", 1, "methods.influence.fisher_samples must be an integer >= 2, got 1"),
        ("influence", "fisher", "kfac", "methods.influence.fisher 'kfac' is unknown; valid: upstream, woodbury"),
        (
            "neggrad_plus",
            "alpha",
            1.5,
            "methods.neggrad_plus.alpha must be a finite number >= 0 and <= 1, got 1.5; valid: [0, 1]",
        ),
        (
            "sharp_minmax",
            "threshold",
            1,
            "methods.sharp_minmax.threshold must be a finite number > 0 and < 1, got 1; valid: (0, 1)",
        ),
        ("sharp_minmax", "forget_sam", "up", "methods.sharp_minmax.forget_sam 'up' is unknown; valid: none, min, max"),
        ("sharp_minmax", "mask_leak", 1, "methods.sharp_minmax.mask_leak must be true or false, got 1"),
    ],
)
def test_check_params_refuses_a_method_option_outside_its_declared_range(tmp_path, method, key, value, message):
    with pytest.raises(GrmuError) as err:
        check(tmp_path, method=method, methods={method: {key: value}})
    assert str(err.value) == message
    with pytest.raises(GrmuError) as err:
        check(tmp_path, method="finetune", methods={method: {key: value}})  # another method's too
    assert str(err.value) == message
    assert not (tmp_path / "ok").exists()


@pytest.mark.parametrize(
    "method,options",
    [
        ("scrub", {"temperature": 1e-6, "alpha": 0, "gamma": 0, "forgetting_epochs": 0, "retain_batch_size": 1}),
        ("salun", {"threshold": 1}),
        ("l1_sparse", {"gamma": 0}),
        ("miu", {"ema_alpha": 1, "lambda_mi": 0, "tune_steps": 0, "tune_steps_first": 0, "mine_hidden": 1}),
        ("influence", {"alpha": -2.5, "fisher_samples": 2}),
        ("neggrad_plus", {"alpha": 0}),
        ("neggrad_plus", {"alpha": 1}),
        ("sharp_minmax", {"threshold": 0.999, "alpha": 1, "retain_sam": "none"}),
    ],
)
def test_check_params_accepts_the_edges_of_each_range(tmp_path, method, options):
    assert check(tmp_path, method=method, methods={method: options}) == "ok\n"


def test_check_params_refuses_a_rule_across_a_methods_options(tmp_path):
    with pytest.raises(GrmuError, match="ablate_unlearn, ablate_alignment and ablate_retain are all true"):
        check(
            tmp_path,
            method="miu",
            methods={"miu": dict.fromkeys(("ablate_unlearn", "ablate_alignment", "ablate_retain"), True)},
        )


def test_a_rum_steps_option_outside_its_range_names_the_step(tmp_path):
    steps = [
        {"subset": "low", "method": "none"},
        {"subset": "mid", "method": "finetune"},
        {"subset": "high", "method": "salun", "options": {"threshold": 2}},
    ]
    over = {
        "method": "rum",
        "forget": {"kind": "memorization", "level": "mix", "count": 30},
        "ratios": [0.1],
        "methods": {"rum": {"steps": steps}},
    }
    with pytest.raises(GrmuError) as err:
        check(tmp_path, **over)
    assert str(err.value) == (
        "methods.rum.steps[2].options.threshold must be a finite number > 0 and <= 1, got 2; valid: (0, 1]"
    )
    steps[2]["options"]["threshold"] = 1
    assert check(tmp_path, **over) == "ok\n"


def test_check_params_refuses_a_recipes_option_outside_its_declared_range(tmp_path, monkeypatch):
    import grmu.recipes as R

    monkeypatch.setattr(R, "HERE", tmp_path)
    R.load_recipe.cache_clear()
    try:
        (tmp_path / "hot.yaml").write_text("entries:\n  - {method: scrub, ratio: 0.5, options: {temperature: 0}}\n")
        assert check(tmp_path, method="scrub", recipe="hot", ratios=[0.1]) == "ok\n"
        with pytest.raises(GrmuError, match=r"^methods.scrub.temperature must be a finite number > 0, got 0$"):
            check(tmp_path, method="scrub", recipe="hot", ratios=[0.1, 0.5])
    finally:
        R.load_recipe.cache_clear()


def test_the_built_in_defaults():
    """The unlearning defaults are the paper's common setup (fact sheet §5.1), the training ones
    the embedded datasets' small CPU setup."""
    from grmu.schema import PROTOCOL_DEFAULTS, UNLEARN_DEFAULTS

    sam = {"mode": "none", "rho": 0.1, "lamb": 1.0, "adaptive": False}
    assert UNLEARN_DEFAULTS == {
        "epochs": 10,
        "batch_size": 64,
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "warmup_epochs": 0,
        "schedule": "cosine",
        "augment": True,
        "optimizer": "sgd",
        "sam": sam,
    }
    assert PROTOCOL_DEFAULTS["train"] == {**UNLEARN_DEFAULTS, "lr": 0.02, "weight_decay": 0.002, "warmup_epochs": 1}
    assert PROTOCOL_DEFAULTS["model"] == {"arch": "small_cnn", "width": 16, "pretrained": "none", "precision": "fp32"}
    assert PROTOCOL_DEFAULTS["retrain"]["gdro"] == {"lr": None, "batch_size": None, "precision": None, "eta": 0.1}


@pytest.fixture
def kl_method():
    """A user's method: one declared option with a range, and no checking code of its own."""
    seen = {}

    @register_method("_kl", options={"kl_weight": Number(1.0, "weight of the KL term", low=0)})
    def kl(ctx):
        seen["options"] = ctx.options
        return ctx.model

    yield seen
    METHODS.remove("_kl")


def test_a_new_methods_declared_range_is_enforced_without_extra_code(tmp_path, kl_method):
    with pytest.raises(GrmuError, match=r"^methods._kl.kl_weight must be a finite number >= 0, got -1$"):
        check(tmp_path, method="_kl", methods={"_kl": {"kl_weight": -1}})
    assert check(tmp_path, method="_kl", methods={"_kl": {"kl_weight": 0}}) == "ok\n"

    class Ctx:
        model = "model"
        options = {"kl_weight": -1}

    with pytest.raises(GrmuError, match="methods._kl.kl_weight must be a finite number >= 0"):
        get_method("_kl").run(Ctx())  # and when the method runs
    Ctx.options = {"kl_weight": 2}
    assert get_method("_kl").run(Ctx()) == "model" and kl_method["options"] == {"kl_weight": 2.0}


def test_a_bare_default_takes_any_value():
    @register_method("_bare", options={"knob": 3})
    def bare(ctx):
        return ctx.options

    try:
        spec = get_method("_bare")
        assert spec.options == {"knob": 3} and checked_options(spec, {"knob": "x"}) == {"knob": "x"}
        with pytest.raises(GrmuError, match=r"unknown key 'methods._bare.knb'; valid keys: knob"):
            checked_options(spec, {"knob": 1, "knb": 2})
    finally:
        METHODS.remove("_bare")


@pytest.mark.parametrize("recipe", recipes())
def test_every_recipe_sets_options_inside_the_declared_ranges(recipe):
    for spec in list_methods():
        for rw in (False, True):
            for multi in (None, 3, 5) if recipe == "fairface" else (None,):
                p = validate(
                    merge(
                        repo_params(),
                        {"method": spec.name, "reweight": rw, "recipe": recipe, "forget": {"multi_group": multi}},
                    )
                )
                for ratio in (0.1, 0.5, 0.9, 1.0):
                    checked_options(spec, resolve(p, spec.options, ratio)["options"])


@pytest.mark.parametrize(
    "option,good,bad,message",
    [
        (Int(1, "d"), [1, 7], [0, 1.0, True, "1", None], "x must be a positive integer"),
        (Int(0, "d", low=0), [0], [-1], "x must be a non-negative integer"),
        (Int(2, "d", low=2, high=4), [2, 4], [1, 5], "x must be an integer >= 2 and <= 4"),
        (
            Number(0.5, "d", low=0, low_open=True, high=1),
            [1e-9, 1, 1.0],
            [0, 1.01, math.nan, math.inf, True, "0.5"],
            "x must be a finite number > 0 and <= 1",
        ),
        (
            Number(0.5, "d", low=0, high=1, high_open=True),
            [0, 0.99],
            [1, -1e-9],
            "x must be a finite number >= 0 and < 1",
        ),
        (Number(None, "d", null=True), [None, -3, 2.5], [math.inf], "x must be a finite number, got"),
        (Bool(False, "d"), [True, False], [0, 1, "true", None], "x must be true or false"),
        (Choice("a", "d", ("a", "b")), ["a", "b"], ["c", ["a"], {"a": 1}, None], "is unknown; valid: a, b"),
    ],
)
def test_an_option_accepts_its_range_and_refuses_the_rest_in_one_line(option, good, bad, message):
    for v in good:
        option.check("x", v)
    for v in bad:
        with pytest.raises(GrmuError) as err:
            option.check("x", v)
        assert message in str(err.value) and "\n" not in str(err.value), v
