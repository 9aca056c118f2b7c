import numpy as np
import pytest

from grmu import GrmuError
from grmu.data import DATASETS, get_dataset
from grmu.prepared import group_index


def test_table_splits_and_group_formula(prep):
    assert len(prep.y) == 5000
    assert [len(prep.indices(s)) for s in ("train", "val", "test")] == [3000, 1000, 1000]
    np.testing.assert_array_equal(prep.g, group_index(prep.y, prep.a, 2))
    assert prep.n_groups == 4 and prep.inputs.shape[1:] == (3, 14, 14)


def test_colour_is_a_shortcut_in_train_only(prep):
    tr, te = prep.indices("train"), prep.indices("test")
    agree_train = (prep.a[tr] == prep.y[tr]).mean()
    agree_test = (prep.a[te] == prep.y[te]).mean()
    assert abs(agree_train - 0.85) < 0.03
    assert abs(agree_test - 0.5) < 0.05
    counts = prep.group_counts(tr)
    assert counts[2] < 0.1 * 3000 and counts[1] < 0.1 * 3000  # two small minority groups
    assert counts.min() > 30


def test_colour_channel_matches_attribute(prep):
    x = prep.inputs[:200].float()
    redder = x[:, 0].sum((1, 2)) > x[:, 1].sum((1, 2))
    np.testing.assert_array_equal(redder.numpy(), prep.a[:200] == 0)


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(
        GrmuError,
        match="unknown dataset 'cifar'; valid: " + ", ".join(DATASETS.names()) + "$",
    ):
        get_dataset("cifar")
