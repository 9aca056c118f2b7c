import numpy as np
import pytest

from grmu import GrmuError
from grmu.splits import forget_pool, load_forget, remaining_indices, sample_forget, save_forget


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9, 1.0])
def test_forget_size_is_int_of_ratio_times_pool(prep, ratio):
    pool = forget_pool(prep, [[1, 0]])
    f = sample_forget(prep, [[1, 0]], ratio, seed=0)
    assert len(f) == int(ratio * len(pool))
    assert set(f) <= set(pool)
    assert ((prep.y[f] == 1) & (prep.a[f] == 0)).all()


def test_forget_set_is_seeded_and_persisted(prep, tmp_path):
    a = sample_forget(prep, [[1, 0]], 0.5, seed=1)
    np.testing.assert_array_equal(a, sample_forget(prep, [[1, 0]], 0.5, seed=1))
    assert not np.array_equal(a, sample_forget(prep, [[1, 0]], 0.5, seed=2))
    save_forget(tmp_path / "f.json", a, [[1, 0]], 0.5, 1, 99)
    np.testing.assert_array_equal(load_forget(tmp_path / "f.json")["forget"], a)


def test_remaining_is_train_minus_forget(prep):
    f = sample_forget(prep, [[1, 0], [0, 1]], 0.5, seed=0)
    rem = remaining_indices(prep, f)
    assert len(rem) + len(f) == len(prep.indices("train"))
    assert not np.isin(rem, f).any()


def test_missing_group_and_empty_forget_set_are_refused(prep):
    with pytest.raises(GrmuError, match=r"forget group \[y=2, a=0\] does not exist"):
        sample_forget(prep, [[2, 0]], 0.5, 0)
    with pytest.raises(GrmuError, match="forgets nothing"):
        sample_forget(prep, [[1, 0]], 0.001, 0)
