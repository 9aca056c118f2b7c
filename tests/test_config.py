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


def test_each_default_has_one_home():
    """params.yaml holds every value except those a recipe or a protocol may set: `unlearn.*`
    (defaults in grmu.recipes.UNLEARN_DEFAULTS), `methods.<m>.*` (defaults in each method's
    registration) and `model.*`, `train.*`, `retrain.*` (grmu.protocols.DEFAULTS) are null
    there, with exactly the registered keys; `datasets.<d>` has exactly the dataset's keys."""
    from pathlib import Path

    import yaml

    from grmu.config import LOOP_KEYS, SCHEMA
    from grmu.data import list_datasets
    from grmu.methods import list_methods
    from grmu.protocols import DEFAULTS
    from grmu.recipes import UNLEARN_DEFAULTS

    def leaves(d, prefix=""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for section, defaults in DEFAULTS.items():
        assert [k for k, _ in leaves(raw[section])] == [k for k, _ in leaves(defaults)], section
        assert [k for k, _ in leaves(SCHEMA[section])] == [k for k, _ in leaves(defaults)], section
        assert all(v is None for _, v in leaves(raw[section])), section
    p = repo_params()
    assert set(UNLEARN_DEFAULTS) == set(LOOP_KEYS) == set(p["unlearn"])
    assert all(v is None for k, v in p["unlearn"].items() if k != "sam")
    assert set(p["unlearn"]["sam"]) == set(UNLEARN_DEFAULTS["sam"]) == set(p["train"]["sam"])
    assert all(v is None for v in p["unlearn"]["sam"].values())
    assert set(p["methods"]) == {m.name for m in list_methods()}
    for m in list_methods():
        assert set(p["methods"][m.name]) == set(m.options), m.name
        assert all(v is None for v in p["methods"][m.name].values()), m.name
    assert set(p["datasets"]) == {d.name for d in list_datasets()}
    for d in list_datasets():
        assert set(p["datasets"][d.name]) == set(d.options), d.name


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
