"""Shared fixtures: the repository's params.yaml shrunk to run on CPU in seconds, and a small
prepared colored_mnist built once per test session."""

import copy
from pathlib import Path

import pytest

from grmu.config import load_params
from grmu.prepared import load_prepared
from grmu.recipes import UNLEARN_DEFAULTS
from grmu.stages import pretrain, retrain
from grmu.stages.prepare import run as prepare
from tests._repo import merge

ROOT = Path(__file__).resolve().parents[1]


def repo_params() -> dict:
    """The repository's params.yaml, validated: the one home of every default."""
    return load_params(ROOT / "params.yaml")


def small_params(**over) -> dict:
    """The real config, shrunk to run on CPU in seconds; ``over`` is merged in (dicts recursively).

    The unlearning settings are pinned to the built-in defaults (not the dataset's recipe) so
    that method tests do not move when a recipe is re-tuned."""
    p = repo_params()
    p = merge(
        p,
        {
            "datasets": {"colored_mnist": {"image_size": 14}},
            "model": {"arch": "small_cnn", "width": 8, "pretrained": "none"},
            "train": {"epochs": 2, "batch_size": 128, "warmup_epochs": 0},
            "unlearn": {**UNLEARN_DEFAULTS, "epochs": 1, "batch_size": 128},
            "eval": {"batch_size": 512, "mia": "single"},
        },
    )
    return copy.deepcopy(merge(p, over))


def train_reference(params, prepared, seed, out, live_dir=None, variant=None, forget_path=None):
    """PRETRAIN (``variant=None``) or the RETRAIN ``variant``, as the DVC stages run them."""
    if variant is None:
        return pretrain.run(params, prepared, seed, out, live_dir)
    return retrain.run(params, prepared, variant, forget_path, seed, out, live_dir)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("prepared")
    prepare(small_params(), d)
    return d


@pytest.fixture(scope="session")
def prep(prepared_dir):
    return load_prepared(prepared_dir)
