"""Forget / remaining set construction.

The forget set for (ratio r, seed s) is drawn once and persisted; every later stage reads
that file, nothing re-samples (the official code re-sampled on every run, fact sheet §8.1).

* pool   = training samples whose (y, a) is one of the forget groups
* forget = ``int(r * |pool|)`` samples drawn uniformly without replacement from the pool
           (not stratified per group), with ``numpy.random.default_rng(s)``
* remaining = train − forget (every other group in full, plus the rest of the pool)

With ``forget.kind: random`` (the sharp-unlearn papers' random forget sets) the pool is the
whole train split: ``int(r * |train|)`` samples (or ``forget.count``) drawn uniformly, whatever
their group; the forget groups are then only the ones whose test accuracy (GA) and fairness
(EO, DP, EP) are reported. ``forget.kind: memorization`` selects as many samples of the train
split by their memorization scores (``forget.level``; rules in ``grmu.memorization``) and also
records the high/mid/low subsets whose accuracies evaluation reports.

The forget groups are ``forget.groups``, else the dataset's default group, or with
``forget.multi_group: k`` (FairFace only; fact sheet §2.3) every (y, a) combination of the
targets and sensitive values of the first ``k`` pairs of the dataset's ``multi_group_pairs``:
k = 3 gives 3 ages x 3 races = 9 groups, k = 5 gives 25. As in the official code, the forget
set is then drawn uniformly from the union of those groups (not per group).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.schema import FORGET_KINDS as KINDS
from grmu.prepared import Prepared


def multi_group_groups(pairs: list, k: int) -> list[list[int]]:
    """The Cartesian product T x S of the targets T and sensitive values S of ``pairs[:k]``
    (each in first-appearance order), as [y, a] pairs."""
    if not 1 <= k <= len(pairs):
        raise GrmuError(f"forget.multi_group {k} needs {k} group pairs; the dataset defines {len(pairs)}")
    targets = list(dict.fromkeys(int(y) for y, _ in pairs[:k]))
    sensitive = list(dict.fromkeys(int(a) for _, a in pairs[:k]))
    return [[y, a] for y in targets for a in sensitive]


def forget_groups(forget: dict, meta: dict) -> list:
    """The forget groups that the ``forget`` params section selects for a prepared dataset."""
    k = forget.get("multi_group")
    if k is None:
        return forget.get("groups") or meta["default_forget_groups"]
    pairs = meta.get("multi_group_pairs")
    if not pairs:
        raise GrmuError(
            f"forget.multi_group is only supported by fairface; dataset '{meta.get('dataset')}' "
            "has no multi-group forget sets (set forget.multi_group: null)"
        )
    if forget.get("groups"):
        raise GrmuError("forget.groups and forget.multi_group are both set; set one of them to null")
    return multi_group_groups(pairs, int(k))


def resolve_groups(prep: Prepared, groups: list) -> list[list[int]]:
    """Check forget groups against the dataset and return them as [y, a] int pairs."""
    out = []
    for pair in groups:
        y, a = (int(v) for v in pair)
        if not (0 <= y < prep.n_classes and 0 <= a < prep.n_attrs):
            raise GrmuError(
                f"forget group [y={y}, a={a}] does not exist: y must be in 0..{prep.n_classes - 1}, "
                f"a in 0..{prep.n_attrs - 1}"
            )
        out.append([y, a])
    return out


def forget_pool(prep: Prepared, groups: list) -> np.ndarray:
    train = prep.indices("train")
    mask = np.zeros(len(train), dtype=bool)
    for y, a in groups:
        mask |= (prep.y[train] == y) & (prep.a[train] == a)
    return train[mask]


def kind_pool(prep: Prepared, groups: list, kind: str = "group") -> np.ndarray:
    """The samples a forget set is drawn from: the forget groups' training samples (``group``)
    or the whole train split (``random``)."""
    if kind not in KINDS:
        raise GrmuError(f"forget.kind '{kind}' is unknown; valid: {', '.join(KINDS)}")
    return forget_pool(prep, groups) if kind == "group" else prep.indices("train")


def sample_forget(
    prep: Prepared, groups: list, ratio: float, seed: int, kind: str = "group", count: int | None = None
) -> np.ndarray:
    """Sorted indices of the forget set for (ratio, seed): ``int(ratio * |pool|)`` samples, or
    ``count`` when given, drawn uniformly without replacement from ``kind_pool``."""
    if not 0 < ratio <= 1:
        raise GrmuError(f"ratio {ratio!r} is outside (0, 1]")
    groups = resolve_groups(prep, groups)
    pool = kind_pool(prep, groups, kind)
    if len(pool) == 0:
        raise GrmuError(f"forget groups {groups} have no training samples; pick groups present in the train split")
    n = forget_size(ratio, len(pool), count)
    if count is not None and not 0 < n < len(pool):
        raise GrmuError(
            f"forget.count {count} must be between 1 and {len(pool) - 1} (the pool has {len(pool)} "
            "training samples and the remaining set may not be empty)"
        )
    if n == 0:
        raise GrmuError(f"ratio {ratio} of a pool of {len(pool)} samples forgets nothing; use a larger ratio")
    if kind == "random" and n >= len(pool):
        raise GrmuError(
            f"ratio {ratio} of a random forget set forgets the whole train split ({len(pool)} samples) and "
            "leaves nothing to remain; use a ratio < 1"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=n, replace=False))


def remaining_indices(prep: Prepared, forget: np.ndarray) -> np.ndarray:
    train = prep.indices("train")
    return train[~np.isin(train, forget)]


def forget_size(ratio: float, pool: int, count: int | None) -> int:
    """``count`` when given, else ``int(ratio * pool)``."""
    return int(ratio * pool) if count is None else int(count)


def save_forget(
    path: str | Path,
    forget: np.ndarray,
    groups: list,
    ratio: float,
    seed: int,
    pool_size: int,
    kind: str = "group",
    extra: dict | None = None,
) -> None:
    """Persist a forget set; ``extra``: the kind's own fields (memorization: level, score,
    ``subsets`` of sample indices)."""
    from grmu.runtime import write_json

    record = {
        "ratio": ratio,
        "seed": seed,
        "groups": groups,
        "pool_size": pool_size,
        "size": len(forget),
        "forget": [int(i) for i in forget],
    }
    if kind != "group":  # group forget sets keep the file format they always had
        record["kind"] = kind
    for key, value in (extra or {}).items():
        record[key] = {k: [int(i) for i in v] for k, v in value.items()} if key == "subsets" else value
    write_json(path, record)


FORGET_KEYS = ("ratio", "seed", "groups", "forget")


def load_forget(path: str | Path, prep: Prepared | None = None) -> dict:
    """The persisted forget set: a dict with 'forget' (np.ndarray), 'groups', 'ratio', 'seed'.

    With ``prep``, the file is checked against the dataset: every index a distinct training
    sample of one of the forget groups; anything else is refused in one line."""
    from grmu.runtime import read_json

    d = read_json(path, "forget set")
    bad = f"damaged forget set {path}"
    if not isinstance(d, dict) or any(k not in d for k in FORGET_KEYS):
        raise GrmuError(f"{bad}: expected the keys {', '.join(FORGET_KEYS)} (rerun `dvc repro --force forget_set`)")
    raw = d["forget"]
    if not isinstance(raw, list) or not raw or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise GrmuError(f"{bad}: 'forget' must be a non-empty list of sample indices")
    d["forget"] = np.asarray(raw, dtype=np.int64)
    if prep is not None:
        f = d["forget"]
        if f.min() < 0 or f.max() >= len(prep.y):
            raise GrmuError(
                f"{bad}: index {int(f.max() if f.max() >= len(prep.y) else f.min())} is outside 0..{len(prep.y) - 1}"
            )
        outside = f[prep.split[f] != "train"]
        if len(outside):
            raise GrmuError(f"{bad}: sample {int(outside[0])} is in the {prep.split[outside[0]]} split, not train")
        if len(np.unique(f)) != len(f):
            raise GrmuError(f"{bad}: it lists a sample twice")
        try:
            groups = resolve_groups(prep, d["groups"])
        except GrmuError as e:
            raise GrmuError(f"{bad}: {e}") from None
        except (TypeError, ValueError, OverflowError):
            raise GrmuError(f"{bad}: 'groups' must be a list of [y, a] pairs, got {d['groups']!r}") from None
        kind = d.get("kind", "group")
        if kind not in KINDS:
            raise GrmuError(f"{bad}: kind '{kind}' is unknown; valid: {', '.join(KINDS)}")
        stray = f[~np.isin(f, kind_pool(prep, groups, kind))]
        if len(stray):
            raise GrmuError(f"{bad}: sample {int(stray[0])} is not in the forget groups {groups}")
        if len(f) == len(prep.indices("train")):
            raise GrmuError(f"{bad}: it lists every training sample, the remaining set would be empty")
    subsets = d.get("subsets") or {}
    if not isinstance(subsets, dict):
        raise GrmuError(f"{bad}: 'subsets' must map subset names to sample indices")
    for name, raw in subsets.items():
        if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
            raise GrmuError(f"{bad}: subset '{name}' must be a list of sample indices")
        idx = np.asarray(raw, dtype=np.int64)
        if (
            prep is not None
            and len(idx)
            and (idx.min() < 0 or idx.max() >= len(prep.y) or (prep.split[idx] != "train").any())
        ):
            raise GrmuError(f"{bad}: subset '{name}' lists a sample that is not in the train split")
        subsets[name] = idx  # in place: d["subsets"] now holds the index arrays
    return d
