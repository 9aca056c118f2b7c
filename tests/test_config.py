import pytest

from grmu import GrmuError
from grmu.config import load_params, section_options, validate
from tests._repo import merge
from tests.conftest import repo_params


def params(**over) -> dict:
    """The repository's params.yaml with ``over`` merged in, validated."""
    return validate(merge(repo_params(), over))


def test_repo_params_file_is_valid():
    p = load_params("params.yaml")
    assert p["dataset"] == "colored_mnist" and p["method"] == "finetune"


def test_unknown_top_level_key_names_the_key_and_valid_choices():
    with pytest.raises(GrmuError, match=r"unknown key 'methd'.*valid keys here: .*method"):
        params(methd="scrub")


def test_unknown_nested_key_is_refused():
    with pytest.raises(GrmuError, match=r"unknown key 'train.learning_rate'"):
        params(train={"learning_rate": 0.1})
    with pytest.raises(GrmuError, match=r"unknown key 'retrain.gdro.etaa'"):
        params(retrain={"gdro": {"etaa": 1}})


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, "half"])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(GrmuError, match=r"ratio .* outside \(0, 1\]"):
        params(ratios=[0.5, ratio])


def test_bad_schedule_and_mia_mode_are_refused():
    with pytest.raises(GrmuError, match="train.schedule 'linear' is unknown; valid: cosine, const"):
        params(train={"schedule": "linear"})
    with pytest.raises(GrmuError, match="eval.mia 'all'"):
        params(eval={"mia": "all"})


def test_a_missing_key_is_refused_not_defaulted():
    """params.yaml is the one home of the defaults: nothing fills a missing key in."""
    p = repo_params()
    del p["train"]["lr"]
    with pytest.raises(GrmuError, match=r"params lack the key 'train.lr'"):
        validate(p)
    p = repo_params()
    del p["eval"]
    with pytest.raises(GrmuError, match=r"params lack the key 'eval'"):
        validate(p)
    p = repo_params()
    del p["retrain"]["gdro"]["eta"]
    with pytest.raises(GrmuError, match=r"params lack the key 'retrain.gdro.eta'"):
        validate(p)


def test_section_options_refuse_unknown_option():
    p = params(methods={"finetune": {"alpha": 1}})
    with pytest.raises(GrmuError, match=r"unknown key 'methods.finetune.alpha'; valid keys: \(none\)"):
        section_options(p, "methods", "finetune", {})


def test_no_param_is_named_like_a_key_dvc_drops_from_the_run_cache():
    """DVC's run-cache hashes a stage's params without any key named `size` or `nfiles`: a
    param of that name would let a changed value restore stale outputs."""
    from pathlib import Path

    import yaml

    def keys(d, prefix=""):
        for k, v in d.items():
            yield f"{prefix}{k}"
            if isinstance(v, dict):
                yield from keys(v, f"{prefix}{k}.")

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    bad = [k for k in keys(params) if k.rsplit(".", 1)[-1] in ("size", "nfiles")]
    assert not bad, bad


def test_params_yaml_has_exactly_the_schemas_keys_and_defaults():
    """The repository's params.yaml is checked against the declared schema (grmu.schema): the
    same keys in the same order; `model.*`, `train.*`, `retrain.*` (the protocol's, else the
    schema's default), `unlearn.*` and `methods.<m>.*` (the recipe's, else the schema's or the
    method's declared default) are null; every other value is the schema's default; `methods`
    lists every method with exactly its declared options and `datasets` every dataset with its
    keys (whose values live in params.yaml only)."""
    from pathlib import Path

    import yaml

    from grmu.data import list_datasets
    from grmu.methods import list_methods
    from grmu.schema import LAYERS, OPEN, PARAMS, leaves

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())

    def keys(d, prefix=""):
        for k, v in d.items():
            yield f"{prefix}{k}"
            if isinstance(v, dict) and PARAMS.get(k) is not OPEN:
                yield from keys(v, f"{prefix}{k}.")

    assert list(raw) == list(PARAMS)
    assert [k for k in keys(raw) if k.split(".")[0] not in ("datasets", "methods")] == [
        k for k in keys({k: v for k, v in PARAMS.items() if v is not OPEN})
    ]
    for key, option in leaves(PARAMS):
        value = raw
        for part in key.split("."):
            value = value[part]
        if key.split(".")[0] in LAYERS:
            assert value is None, key
        else:
            assert value == option.default and type(value) is type(option.default), key
    assert set(raw["methods"]) == {m.name for m in list_methods()}
    for m in list_methods():
        assert list(raw["methods"][m.name] or {}) == list(m.declared), m.name
        assert all(v is None for v in (raw["methods"][m.name] or {}).values()), m.name
    assert set(raw["datasets"]) == {d.name for d in list_datasets()}
    for d in list_datasets():
        assert set(raw["datasets"][d.name]) == set(d.options), d.name


def test_the_protocol_and_recipe_defaults_are_the_schemas():
    """One home: grmu.protocols.DEFAULTS and grmu.recipes.UNLEARN_DEFAULTS are read from the schema."""
    from grmu import protocols, recipes
    from grmu.schema import PARAMS, defaults

    assert protocols.DEFAULTS == {s: defaults(PARAMS[s]) for s in ("model", "train", "retrain")}
    assert recipes.UNLEARN_DEFAULTS == defaults(PARAMS["unlearn"])
    assert repo_params()["train"] == defaults(PARAMS["train"])  # colored_mnist has no protocol


def test_a_dataset_section_must_name_exactly_the_dataset_keys():
    from grmu.config import dataset_options
    from grmu.data import get_dataset

    spec = get_dataset("fairface")
    p = repo_params()
    assert dataset_options(p, spec) == {"image_size": 224, "seed": 0}
    del p["datasets"]["fairface"]["seed"]
    with pytest.raises(GrmuError, match=r"params lack the key 'datasets.fairface.seed'"):
        dataset_options(p, spec)
    p = repo_params()
    p["datasets"]["fairface"]["size"] = 64
    with pytest.raises(GrmuError, match=r"unknown key 'datasets.fairface.size'; valid keys: image_size, seed"):
        dataset_options(p, spec)
