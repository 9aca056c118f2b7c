"""The registries are the one list of methods and datasets: adding a method is its file (and its
params block), adding a dataset is its file (and a fixture maker if it reads files). The generic
tests enumerate ``grmu.methods.METHODS`` and ``grmu.data.DATASETS`` at collection, so no test
names them; here every registered dataset is prepared on its smallest fixture, and a throwaway
method and dataset (``tests/plugins/throwaway.py``, loaded as a pytest plugin) are shown to be
picked up by the generic tests."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from grmu import GrmuError
from grmu.data import DATASETS, get_dataset
from grmu.methods import METHODS
from grmu.prepared import SPLITS, load_prepared
from grmu.stages.prepare import run as prepare
from tests import fixtures_real as fx
from tests.conftest import ROOT, small_params

# options shrunk for every dataset that has them: the first value the dataset accepts is used
# (colored_mnist / mnist take 7, 14 or 28 px; the real image datasets any size >= 8)
SMALLEST = {"image_size": (7, 8)}
META_KEYS = {
    "dataset",
    "options",
    "n_classes",
    "n_attrs",
    "classes",
    "attrs",
    "default_forget_groups",
    "input_shape",
    "run",
}


def smallest_options(name: str) -> tuple[dict, dict]:
    """``(options, tries)``: params.yaml's ``datasets.<name>`` with the fixture's own options
    (``fixtures_real.FIXTURE_OPTIONS``) and the first ``SMALLEST`` value of every other option
    the dataset has; ``tries`` the ``SMALLEST`` values still to try, per option."""
    spec = get_dataset(name)
    fixed = fx.FIXTURE_OPTIONS.get(name, {})
    tries = {k: list(v) for k, v in SMALLEST.items() if k in spec.options and k not in fixed}
    options = {**small_params()["datasets"].get(name, {}), **fixed, **{k: v[0] for k, v in tries.items()}}
    return options, tries


def prepare_smallest(name: str, data_dir, out) -> dict:
    """Prepare ``name`` from ``data_dir`` into ``out`` with its smallest accepted options; the
    options used. An error naming one of the ``SMALLEST`` options moves it to its next value."""
    options, tries = smallest_options(name)
    while True:
        params = small_params(dataset=name, data_dir=str(data_dir))
        params["datasets"] = {**params["datasets"], name: options}
        try:
            prepare(params, out)
            return options
        except GrmuError as e:
            key = next((k for k in tries if f"datasets.{name}.{k}" in str(e) and len(tries[k]) > 1), None)
            if key is None:
                raise
            tries[key].pop(0)
            options = {**options, key: tries[key][0]}


def check_prepared(name: str, out, options: dict) -> None:
    """The invariants every prepared dataset keeps, whatever its builder."""
    spec = get_dataset(name)
    prep = load_prepared(out)
    meta = prep.meta
    assert META_KEYS <= set(meta), f"meta.json lacks {sorted(META_KEYS - set(meta))}"
    assert meta["dataset"] == name and meta["options"] == options
    assert meta["default_forget_groups"] == spec.forget_groups
    assert len(meta["classes"]) == prep.n_classes >= 2, f"{name}: classes {meta['classes']}, n_classes {prep.n_classes}"
    assert len(meta["attrs"]) == prep.n_attrs >= 1, f"{name}: attrs {meta['attrs']}, n_attrs {prep.n_attrs}"
    n = len(prep.y)
    assert len(prep.inputs) == len(prep.a) == len(prep.g) == len(prep.split) == n
    assert meta["input_shape"] == list(prep.inputs.shape[1:])
    for split in SPLITS:
        assert len(prep.indices(split)) > 0, f"{name}: the {split} split is empty"
    assert set(prep.split) == set(SPLITS)
    for values, n_values, what in ((prep.y, prep.n_classes, "y (n_classes)"), (prep.a, prep.n_attrs, "a (n_attrs)")):
        low, high = int(values.min()), int(values.max())
        assert 0 <= low and high < n_values, f"{name}: {what} {n_values}, but values {low}..{high}"
    bad = np.flatnonzero(prep.g != prep.a + prep.y * prep.n_attrs)
    assert not len(bad), f"{name}: g != a + y * n_attrs for {len(bad)} samples, first {bad[0]}"
    train = prep.indices("train")
    for y, a in spec.forget_groups:
        in_group = (prep.y[train] == y) & (prep.a[train] == a)
        assert in_group.any(), f"{name}: no training sample of forget group {[y, a]}"
    x = prep.inputs
    if meta.get("input", "image") == "image":
        assert x.dtype == torch.uint8 and x.ndim == 4, (x.dtype, tuple(x.shape))
    else:
        assert meta["input"] == "tokens" and not x.is_floating_point() and x.ndim == 3 and x.shape[1] == 3
        assert x[:, 0].min() >= 0 and x[:, 0].max() < meta.get("vocab_size", np.inf)
        assert set(torch.unique(x[:, 1:]).tolist()) <= {0, 1}  # attention mask, segment ids


def test_every_maker_belongs_to_a_registered_dataset():
    assert set(fx.MAKERS) <= set(DATASETS.names())
    assert set(fx.FIXTURE_OPTIONS) <= set(fx.MAKERS)


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_registered_dataset_prepares_on_its_smallest_fixture(name, tmp_path):
    """A dataset with a maker in tests/fixtures_real.py is prepared from its fixture, any other
    from an empty data_dir (an embedded dataset needs none)."""
    data_dir = tmp_path / "raw"
    data_dir.mkdir()
    if name in fx.MAKERS:
        fx.MAKERS[name](data_dir)
    reads_files = None
    try:
        options = prepare_smallest(name, data_dir, tmp_path / "prep")
    except Exception as e:
        if name in fx.MAKERS or str(data_dir) not in str(e):
            raise
        reads_files = f"{type(e).__name__}: {e}"
    if reads_files:  # failed outside the except block: one message, no chained traceback
        pytest.fail(
            f"dataset '{name}' reads files under data_dir, but tests/fixtures_real.py has no maker for it: "
            f"add make_{name}(root), writing its smallest fixture in the official layout under root, to "
            f"MAKERS there (prepared from an empty data_dir: {reads_files})",
            pytrace=False,
        )
    check_prepared(name, tmp_path / "prep", options)


# --- a new method and dataset are picked up --------------------------------------------------

PLUGIN = "tests.plugins.throwaway"
FILES = ["tests/test_methods.py", "tests/test_registries.py"]
METHOD_TEST = "tests/test_methods.py::test_runs_through_registry_changes_weights_and_is_deterministic"
DATASET_TEST = "tests/test_registries.py::test_every_registered_dataset_prepares_on_its_smallest_fixture"


def start_pytest(*args) -> subprocess.Popen:
    """``python -m pytest ARGS`` started in the repository root, in a fresh interpreter."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    """The output of a started pytest run, which must have passed."""
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{out[-4000:]}"
    return out


def node_ids(out: str) -> set[str]:
    """The test ids that ``--collect-only -q`` lists."""
    return {line for line in out.splitlines() if re.fullmatch(r"tests/\S+::\S+", line)}


def test_generic_tests_pick_up_a_new_method_and_dataset():
    # the three runs at once (each starts an interpreter and imports torch)
    procs = [
        start_pytest("--collect-only", "-q", *FILES),
        start_pytest("--collect-only", "-q", "-p", PLUGIN, *FILES),
        start_pytest("-p", PLUGIN, "-k", "_throwaway", "-v", *FILES),
    ]
    try:
        plain, plugged, ran = (finish(p) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    without = node_ids(plain)
    assert {f"{METHOD_TEST}[{m}]" for m in METHODS.names()} <= without
    assert {f"{DATASET_TEST}[{d}]" for d in DATASETS.names()} <= without
    assert not [i for i in without if "_throwaway" in i], "the throwaway entries leak without the plugin"

    ids = node_ids(plugged)
    new = {i for i in ids if re.search(r"\[_throwaway(_ds)?\]", i)}
    assert f"{METHOD_TEST}[_throwaway]" in new and f"{DATASET_TEST}[_throwaway_ds]" in new, sorted(new)
    assert ids - new == without  # the plugin adds its entries and changes nothing else

    passed = set(re.findall(r"^(\S+::\S+) PASSED", ran, re.MULTILINE))
    assert passed == new, ran[-4000:]
