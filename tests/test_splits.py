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


# --------------------------------------------------------------------------- random forget sets


def test_random_forget_set_is_a_uniform_draw_from_all_of_train(prep):
    train = prep.indices("train")
    f = sample_forget(prep, [[1, 0]], 0.1, 3, kind="random")
    assert len(f) == int(0.1 * len(train)) and np.all(np.diff(f) > 0)
    assert np.isin(f, train).all()
    assert len(np.unique(prep.g[f])) == prep.n_groups  # every group, not only the forget group's
    assert np.array_equal(f, sample_forget(prep, [[1, 0]], 0.1, 3, kind="random"))
    assert not np.array_equal(f, sample_forget(prep, [[1, 0]], 0.1, 4, kind="random"))
    # proportions follow the train split's (uniform draw), within sampling noise
    share = (prep.g[f] == 0).mean()
    assert abs(share - (prep.g[train] == 0).mean()) < 0.06


def test_random_forget_count_and_its_bounds(prep):
    assert len(sample_forget(prep, [[1, 0]], 0.5, 0, kind="random", count=37)) == 37
    n_train = len(prep.indices("train"))
    for bad in (0, n_train):
        with pytest.raises(GrmuError, match=f"forget.count {bad} must be between 1 and {n_train - 1}"):
            sample_forget(prep, [[1, 0]], 0.5, 0, kind="random", count=bad)
    with pytest.raises(GrmuError, match="ratio 1.0 of a random forget set forgets the whole train split"):
        sample_forget(prep, [[1, 0]], 1.0, 0, kind="random")
    with pytest.raises(GrmuError, match="forget.kind 'uniform' is unknown; valid: group, random"):
        sample_forget(prep, [[1, 0]], 0.5, 0, kind="uniform")


def test_random_forget_file_round_trips_and_keeps_its_kind(prep, tmp_path):
    f = sample_forget(prep, [[1, 0]], 0.2, 1, kind="random")
    path = tmp_path / "f.json"
    save_forget(path, f, [[1, 0]], 0.2, 1, len(prep.indices("train")), "random")
    d = load_forget(path, prep)
    assert d["kind"] == "random" and np.array_equal(d["forget"], f)
    # the same file claimed to be a group forget set is refused: samples outside the group
    save_forget(path, f, [[1, 0]], 0.2, 1, 10)
    with pytest.raises(GrmuError, match="is not in the forget groups"):
        load_forget(path, prep)


def test_forget_kind_and_count_are_validated_in_params():
    from grmu.config import validate
    from tests.conftest import repo_params

    def refused(fragment, **forget):
        p = repo_params()
        p["forget"].update(forget)
        with pytest.raises(GrmuError, match=fragment):
            validate(p)

    refused("forget.kind 'uniform' is unknown; valid: group, random", kind="uniform")
    refused("forget.count must be a positive integer, got 0", kind="random", count=0)
    refused("forget.count sets the size of a random or memorization forget set", count=100)
    refused("list a single ratio", kind="random", count=100)
    p = repo_params()
    p["forget"].update(kind="random", count=100)
    p["ratios"] = [0.1]
    assert validate(p)["forget"]["count"] == 100
