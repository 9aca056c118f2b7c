"""Forget / remaining sets to the letter, on a hand-made 20-sample dataset (no files, no
training): which samples form the pool, the seeded draw, every refusal with its exact message,
the file format and every way a forget file can be damaged."""

import numpy as np
import pytest

from grmu import GrmuError
from grmu.splits import forget_pool, load_forget, remaining_indices, sample_forget, save_forget


# A hand-made dataset with 3 classes and 2 attribute values (so y and a cannot be swapped
# unnoticed) whose forget groups also have samples in val and test.


def tiny():
    from grmu.prepared import Prepared

    split = np.array(["train"] * 12 + ["val"] * 4 + ["test"] * 4)
    y = np.array([0, 1, 2, 1, 0, 2, 1, 2, 0, 1, 2, 1, 1, 2, 0, 1, 1, 2, 0, 2])
    a = np.array([0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0])
    return Prepared(split=split, y=y, a=a, g=a + 2 * y, inputs=None, meta={"n_classes": 3, "n_attrs": 2})


def test_forget_groups_come_from_groups_the_default_or_multi_group():
    from grmu.splits import forget_groups

    meta = {"dataset": "celeba", "default_forget_groups": [[1, 1]]}
    assert forget_groups({"groups": [[0, 1]], "multi_group": None}, meta) == [[0, 1]]
    assert forget_groups({"groups": None, "multi_group": None}, meta) == [[1, 1]]
    assert forget_groups({"groups": []}, meta) == [[1, 1]]
    fair = {**meta, "multi_group_pairs": [[2, 1], [0, 3], [1, 0]]}
    assert forget_groups({"groups": None, "multi_group": "1"}, fair) == [[2, 1]]
    assert forget_groups({"multi_group": 3}, fair)[:4] == [[2, 1], [2, 3], [2, 0], [0, 1]]
    for m in (meta, {**meta, "multi_group_pairs": []}):
        with pytest.raises(GrmuError) as e:
            forget_groups({"groups": None, "multi_group": 3}, m)
        assert str(e.value) == (
            "forget.multi_group is only supported by fairface; dataset 'celeba' has no "
            "multi-group forget sets (set forget.multi_group: null)"
        )
    with pytest.raises(GrmuError) as e:
        forget_groups({"groups": [[0, 1]], "multi_group": 3}, fair)
    assert str(e.value) == "forget.groups and forget.multi_group are both set; set one of them to null"


def test_forget_groups_are_checked_against_the_classes_and_attributes():
    from grmu.splits import resolve_groups

    p = tiny()
    got = resolve_groups(p, [["2", 1.0], [0, 0]])
    assert got == [[2, 1], [0, 0]] and all(type(v) is int for pair in got for v in pair)
    for y, a in ((3, 0), (0, 2), (-1, 0), (0, -1)):
        with pytest.raises(GrmuError) as e:
            resolve_groups(p, [[0, 0], [y, a]])
        assert str(e.value) == f"forget group [y={y}, a={a}] does not exist: y must be in 0..2, a in 0..1"


def test_the_pool_holds_the_training_samples_of_every_forget_group_only():
    from grmu.splits import kind_pool

    p = tiny()
    # (y=1, a=0): train samples 1, 6, 9 (12 and 15 are val/test); (y=2, a=1): 2, 7, 10
    assert forget_pool(p, [[1, 0]]).tolist() == [1, 6, 9]
    assert forget_pool(p, [[1, 0], [2, 1]]).tolist() == [1, 2, 6, 7, 9, 10]
    assert forget_pool(p, [[0, 1]]).tolist() == [4]
    assert kind_pool(p, [[1, 0]]).tolist() == [1, 6, 9]
    for kind in ("random", "memorization"):
        assert kind_pool(p, [[1, 0]], kind).tolist() == list(range(12))
    with pytest.raises(GrmuError) as e:
        kind_pool(p, [[1, 0]], "uniform")
    assert str(e.value) == "forget.kind 'uniform' is unknown; valid: group, random, memorization"


def test_the_forget_set_is_the_seeded_uniform_draw_from_the_pool():
    from grmu.splits import forget_size

    p = tiny()
    pool = [1, 2, 6, 7, 9, 10]
    for seed in (0, 1, 7):
        want = np.sort(np.random.default_rng(seed).choice(pool, size=4, replace=False))
        got = sample_forget(p, [[1, 0], [2, 1]], 0.7, seed)  # int(0.7 * 6) = 4
        assert got.tolist() == want.tolist()
    assert sample_forget(p, [[1, 0], [2, 1]], 1.0, 0).tolist() == pool  # ratio 1: the whole pool
    assert len(sample_forget(p, [[1, 0], [2, 1]], 0.5, 0, count=5)) == 5
    assert forget_size(0.29, 100, None) == 28 and forget_size(0.5, 7, None) == 3 and forget_size(0.1, 7, 4.0) == 4
    want = np.sort(np.random.default_rng(3).choice(np.arange(12), size=2, replace=False))
    assert sample_forget(p, [[1, 0]], 0.2, 3, kind="random").tolist() == want.tolist()  # int(0.2 * 12)


def test_bad_ratios_counts_and_empty_pools_are_refused_by_name():
    p = tiny()

    def refused(message, *args, **kw):
        with pytest.raises(GrmuError) as e:
            sample_forget(p, *args, **kw)
        assert str(e.value) == message

    refused("ratio 0 is outside (0, 1]", [[1, 0]], 0, 0)
    refused("ratio 1.5 is outside (0, 1]", [[1, 0]], 1.5, 0)
    refused("forget group [y=5, a=0] does not exist: y must be in 0..2, a in 0..1", [[5, 0]], 0.5, 0)
    refused("ratio 0.3 of a pool of 3 samples forgets nothing; use a larger ratio", [[1, 0]], 0.3, 0)
    refused(
        "forget.count 3 must be between 1 and 2 (the pool has 3 training samples and the remaining set may "
        "not be empty)",
        [[1, 0]],
        0.5,
        0,
        count=3,
    )
    refused(
        "forget.count 0 must be between 1 and 2 (the pool has 3 training samples and the remaining set may "
        "not be empty)",
        [[1, 0]],
        0.5,
        0,
        count=0,
    )
    refused(
        "ratio 1.0 of a random forget set forgets the whole train split (12 samples) and leaves nothing to "
        "remain; use a ratio < 1",
        [[1, 0]],
        1.0,
        0,
        kind="random",
    )
    assert len(sample_forget(p, [[1, 0]], 0.5, 0, count=2)) == 2  # the largest count allowed
    assert len(sample_forget(p, [[1, 0]], 0.5, 0, count=1)) == 1  # and the smallest
    assert len(sample_forget(p, [[1, 0]], 11 / 12, 0, kind="random")) == 11


def test_an_empty_forget_group_is_refused():
    from grmu.prepared import Prepared

    p = tiny()
    q = Prepared(split=p.split, y=p.y, a=np.where(p.y == 0, 0, p.a), g=p.g, inputs=None, meta=p.meta)
    with pytest.raises(GrmuError) as e:
        sample_forget(q, [[0, 1]], 0.5, 0)
    assert str(e.value) == "forget groups [[0, 1]] have no training samples; pick groups present in the train split"


def test_remaining_is_every_other_training_sample_in_order():
    assert remaining_indices(tiny(), np.array([9, 1, 6])).tolist() == [0, 2, 3, 4, 5, 7, 8, 10, 11]


def test_the_forget_file_records_exactly_what_was_drawn(tmp_path):
    import json

    path = tmp_path / "f.json"
    save_forget(path, np.array([6, 9], dtype=np.int64), [[1, 0]], 0.7, 3, 3)
    assert json.loads(path.read_text()) == {
        "ratio": 0.7,
        "seed": 3,
        "groups": [[1, 0]],
        "pool_size": 3,
        "size": 2,
        "forget": [6, 9],
    }
    save_forget(
        path,
        np.array([0, 4]),
        [[1, 0]],
        0.2,
        1,
        12,
        "memorization",
        {"level": "mix", "subsets": {"high": np.array([4]), "low": [0]}},
    )
    d = json.loads(path.read_text())
    assert d["kind"] == "memorization" and d["level"] == "mix" and d["subsets"] == {"high": [4], "low": [0]}
    assert d["size"] == 2 and d["pool_size"] == 12
    loaded = load_forget(path, tiny())
    assert loaded["forget"].dtype == np.int64 and loaded["subsets"]["high"].tolist() == [4]
    assert loaded["subsets"]["low"].dtype == np.int64
    save_forget(path, np.array([6]), [[1, 0]], 0.5, 0, 3)
    assert "subsets" not in load_forget(path, tiny()) and "kind" not in json.loads(path.read_text())


@pytest.mark.parametrize(
    "record,message",
    [
        (
            {"ratio": 0.5, "seed": 0, "forget": [1]},
            "expected the keys ratio, seed, groups, forget (rerun `dvc repro --force forget_set`)",
        ),
        ([1, 2], "expected the keys ratio, seed, groups, forget (rerun `dvc repro --force forget_set`)"),
        ({"forget": []}, "'forget' must be a non-empty list of sample indices"),
        ({"forget": {"0": 1}}, "'forget' must be a non-empty list of sample indices"),
        ({"forget": [1, True]}, "'forget' must be a non-empty list of sample indices"),
        ({"forget": [1, 6.0]}, "'forget' must be a non-empty list of sample indices"),
        ({"forget": [1, 20]}, "index 20 is outside 0..19"),
        ({"forget": [-1, 6]}, "index -1 is outside 0..19"),
        ({"forget": [1, 12]}, "sample 12 is in the val split, not train"),
        ({"forget": [1, 16]}, "sample 16 is in the test split, not train"),
        ({"forget": [1, 6, 1]}, "it lists a sample twice"),
        ({"forget": [1, 6, 0]}, "sample 0 is not in the forget groups [[1, 0]]"),
        ({"forget": [1], "groups": [[1, 2]]}, "forget group [y=1, a=2] does not exist: y must be in 0..2, a in 0..1"),
        ({"forget": [1], "groups": 5}, "'groups' must be a list of [y, a] pairs, got 5"),
        ({"forget": [1], "groups": [[1, 0, 2]]}, "'groups' must be a list of [y, a] pairs, got [[1, 0, 2]]"),
        ({"forget": [1], "groups": [[float("inf"), 0]]}, "'groups' must be a list of [y, a] pairs, got [[inf, 0]]"),
        ({"forget": [1], "kind": "uniform"}, "kind 'uniform' is unknown; valid: group, random, memorization"),
        (
            {"forget": list(range(12)), "kind": "random"},
            "it lists every training sample, the remaining set would be empty",
        ),
        ({"forget": [1], "subsets": [[1]]}, "'subsets' must map subset names to sample indices"),
        ({"forget": [1], "subsets": {"high": [1, False]}}, "subset 'high' must be a list of sample indices"),
        ({"forget": [1], "subsets": {"high": 1}}, "subset 'high' must be a list of sample indices"),
        (
            {"forget": [1], "subsets": {"high": [1], "low": [20]}},
            "subset 'low' lists a sample that is not in the train split",
        ),
        ({"forget": [1], "subsets": {"low": [-1]}}, "subset 'low' lists a sample that is not in the train split"),
        ({"forget": [1], "subsets": {"low": [2, 13]}}, "subset 'low' lists a sample that is not in the train split"),
    ],
)
def test_a_damaged_forget_file_is_refused_in_one_line(tmp_path, record, message):
    import json

    path = tmp_path / "f.json"
    if isinstance(record, dict) and "ratio" not in record:
        record = {"ratio": 0.5, "seed": 0, "groups": [[1, 0]], **record}
    path.write_text(json.dumps(record))
    with pytest.raises(GrmuError) as e:
        load_forget(path, tiny())
    assert str(e.value) == f"damaged forget set {path}: {message}"


def test_a_missing_or_unreadable_forget_file_is_named_as_a_forget_set(tmp_path):
    path = tmp_path / "f.json"
    with pytest.raises(GrmuError, match=r"^missing forget set: .*f.json \(run the stage that makes it"):
        load_forget(path)
    path.write_text("{not json")
    with pytest.raises(GrmuError, match=r"^damaged forget set: .*f.json is not valid JSON"):
        load_forget(path)


def test_a_forget_file_read_without_the_dataset_checks_only_its_shape(tmp_path):
    import json

    path = tmp_path / "f.json"
    path.write_text(
        json.dumps({"ratio": 0.5, "seed": 0, "groups": [[9, 9]], "forget": [99, 99], "subsets": {"high": [99]}})
    )
    d = load_forget(path)
    assert d["forget"].tolist() == [99, 99] and d["subsets"]["high"].tolist() == [99]
    assert d["ratio"] == 0.5 and d["groups"] == [[9, 9]]
