"""Shared fixtures: a small prepared colored_mnist built once per test session."""
import copy

import pytest

from grmu.config import DEFAULTS, UNLEARN_DEFAULTS, validate
from grmu.data import load_prepared
from grmu.pipeline import prepare


def small_params(**over) -> dict:
    """The real config, shrunk to run on CPU in seconds."""
    p = validate({})
    p["datasets"] = {"colored_mnist": {"image_size": 14}}
    p["model"] = {"arch": "small_cnn", "width": 8, "pretrained": "none"}
    p["train"] = {**DEFAULTS["train"], "epochs": 2, "batch_size": 128, "warmup_epochs": 0}
    p["unlearn"] = {**UNLEARN_DEFAULTS, "epochs": 1, "batch_size": 128}
    p["eval"] = {"batch_size": 512, "mia": "single"}
    for k, v in over.items():
        p[k] = v
    return copy.deepcopy(p)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("prepared")
    prepare(small_params(), d)
    return d


@pytest.fixture(scope="session")
def prep(prepared_dir):
    return load_prepared(prepared_dir)
