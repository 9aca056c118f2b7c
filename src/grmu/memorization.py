"""Memorization scores and memorization forget sets: the formulas and the selection rules
(numpy only; the training runs that produce scores are in ``grmu.stages.memorization``).

Scores are per training sample, oriented so that **larger means more memorized**:

* ``heldout`` (Feldman & Zhang): K models, each trained on part of train;
  ``mem_i = P(correct | i trained on) - P(correct | i held out)``, in [-1, 1]. Each sample is
  held out of exactly ``round((1 - fraction) * K)`` models, drawn at random per sample, so every
  estimate is defined (Feldman & Zhang draw the subsets independently, which at small K leaves
  some samples never held out).
* the proxies of one training run (fact sheet §2), averaged over every iteration of every
  epoch on that iteration's training-mode outputs: ``confidence`` (p of the true label),
  ``max_conf`` (max p), ``entropy`` (upstream's Σ p log p, the negative entropy) and ``bi_acc``
  (0/1 correctness). High values of all four mean *easy* (less memorized), so grmu negates them:
  grmu's ``forget.level: high`` is upstream's proxy "low" (its proxy RUM order high -> mid ->
  low is grmu's low -> mid -> high, the order it uses for true memorization).
* ``ho_ret`` (held-out retraining, [RUM] ``heldout_retrain.py``): a copy of the PRETRAIN model
  is fine-tuned on the test split (constant-lr SGD, ``memorization.ft_lr`` / ``ft_epochs``,
  stopping after ``HO_RET_PATIENCE`` epochs without a lower training loss: the epoch's
  sample-weighted mean, where upstream compares sums of batch means, which differ when the
  last batch is partial); the score of a training sample is the symmetric KL
  ``(KL(p||q) + KL(q||p)) / 2`` between the two
  models' softmax outputs (probabilities clamped at 1e-10, as upstream). A sample whose
  prediction moves when the model learns from other data is one the model held by memory, so
  larger already means more memorized (upstream's high = top KL too; no negation).
* ``file``: precomputed scores (Feldman's ``tr_mem``, the CIFAR-10 ``memorization``), entry i
  scoring prepared sample i (the official training files' order), read with
  ``allow_pickle=False``.

Selection (as upstream ``main_forget.py``): stable descending sort of the training samples by
score (ties keep index order); high = first n, low = last n, mid = the n closest to the centre
(0.5 for memorization scores, the median for proxies and ``ho_ret``) after a stable re-sort of the descending
list; mix = the first n//3 of high, of mid and the last n//3 of low (upstream's ``low[-n//3:]``
takes ceil(n/3) when 3 does not divide n). The proxies are sorted negated, so their tied
samples come in the reverse of upstream's order (docs/datasets.md, "Differences from
upstream"). The accuracy subsets that evaluation reports are high[:n//3], mid[:n//3] and
low[-(n//3):] (upstream: 1,000 of 3,000), so
for ``mix`` they are exactly the three parts of the forget set. One difference: the mid third
is taken from the samples that are in neither the high nor the low third. Upstream
concatenates the three as they are, which on a dataset with few samples near the centre
(the embedded mnist: most held-out scores are 0) repeats samples of the high third in the mid
one; on CIFAR-100 the thirds are disjoint anyway and both rules give the same sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.schema import FORGET_LEVELS as LEVELS
from grmu.schema import MEMORIZATION_PROXIES as PROXIES
from grmu.schema import MEMORIZATION_SCORES as SCORES

SUBSETS = ("high", "mid", "low")
ESTIMATES = ("heldout", "file")  # memorization estimates in [-1, 1]; every other score is a proxy
HO_RET_PATIENCE = 4  # ho_ret: epochs without a lower training loss before the fine-tuning stops (upstream)
KL_EPS = 1e-10  # ho_ret: probabilities are clamped here before the logs (upstream)
FILE_KEYS = ("tr_mem", "memorization")  # Feldman's CIFAR-100 / CIFAR-10 files


def resolve_score(score: str, forget_kind: str) -> str:
    """``auto`` is ``heldout`` for memorization forget sets and ``none`` (nothing computed) otherwise."""
    if score not in SCORES:
        raise GrmuError(f"memorization.score '{score}' is unknown; valid: {', '.join(SCORES)}")
    if score == "auto":
        return "heldout" if forget_kind == "memorization" else "none"
    return score


def heldout_design(n: int, models: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``member[k, i]``: whether model k trains on sample i. Each sample is left out of exactly
    ``round((1 - fraction) * models)`` models, chosen uniformly at random per sample."""
    out = int(round((1 - fraction) * models))
    if not 0 < out < models:
        raise GrmuError(
            f"memorization.fraction {fraction} with {models} models holds each sample out of {out} "
            "models; it must be held out of at least one and trained on by at least one (use more "
            "models or a fraction further from 0 and 1)"
        )
    member = np.ones((models, n), dtype=bool)
    for i in range(n):
        member[rng.choice(models, size=out, replace=False), i] = False
    return member


def heldout_scores(correct: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Feldman & Zhang's estimate from ``correct[k, i]`` (model k classifies sample i right) and
    ``member[k, i]``: mean correctness over the models trained on i minus that over the others."""
    correct = np.asarray(correct, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    n_in, n_out = member.sum(0), (~member).sum(0)
    if (n_in == 0).any() or (n_out == 0).any():
        raise GrmuError("every sample must be trained on by one model and held out of another")
    return (correct * member).sum(0) / n_in - (correct * ~member).sum(0) / n_out


def proxy_scores(sums: np.ndarray, counts: np.ndarray, score: str) -> np.ndarray:
    """The memorization-oriented proxy (larger = more memorized) from per-sample sums of the
    records (rows: confidence, max_conf, entropy as Σ p log p, bi_acc) and their counts."""
    if (counts == 0).any():
        raise GrmuError(f"{int((counts == 0).sum())} training samples were never seen by the proxy run")
    return -(sums[PROXIES.index(score)] / counts)


def symmetric_kl(p: np.ndarray, q: np.ndarray, eps: float = KL_EPS) -> np.ndarray:
    """Per row, ``(KL(p||q) + KL(q||p)) / 2`` of two arrays of probability rows, both clamped at
    ``eps`` first (``ho_ret``)."""
    p = np.maximum(np.asarray(p, dtype=np.float64), eps)
    q = np.maximum(np.asarray(q, dtype=np.float64), eps)
    return ((p - q) * (np.log(p) - np.log(q))).sum(1) / 2


def should_stop(losses: list[float], patience: int = HO_RET_PATIENCE) -> bool:
    """Whether fine-tuning with these per-epoch training losses so far stops now: the last
    ``patience`` epochs brought no loss below the best one before them (strict ``<``)."""
    if len(losses) <= patience:
        return False
    return min(losses[-patience:]) >= min(losses[:-patience])


def centre(score: str, scores: np.ndarray) -> float:
    """Where ``mid`` is centred: 0.5 for memorization estimates, the median for proxies."""
    return 0.5 if score in ESTIMATES else float(np.median(scores))


def orders(scores: np.ndarray, mid_centre: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions in stable descending score order, and that order stably re-sorted by the
    distance to ``mid_centre``."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    return order, order[np.argsort(np.abs(scores[order] - mid_centre), kind="stable")]


def level_sets(scores: np.ndarray, n: int, mid_centre: float) -> dict[str, np.ndarray]:
    """Positions (into ``scores``) of the ``n`` high, mid and low samples, in selection order."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < n < len(scores):
        raise GrmuError(
            f"a memorization forget set of {n} samples needs between 1 and {len(scores) - 1} (the train "
            f"split has {len(scores)} samples and the remaining set may not be empty)"
        )
    order, by_centre = orders(scores, mid_centre)
    return {"high": order[:n], "mid": by_centre[:n], "low": order[-n:]}


def select(scores: np.ndarray, n: int, level: str, mid_centre: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(forget, subsets)``: positions of the forget set of ``level`` and of the evaluation
    subsets high[:n//3], mid[:n//3] and low[-n//3:], the mid third taken from the samples in
    neither of the other two (see the module docstring)."""
    if level not in LEVELS:
        raise GrmuError(f"forget.level '{level}' is unknown; valid: {', '.join(LEVELS)}")
    sets = level_sets(scores, n, mid_centre)
    k = n // 3
    if k == 0:
        raise GrmuError(f"a memorization forget set of {n} samples has no thirds; use at least 3 samples")
    high, low = sets["high"][:k], sets["low"][-k:]
    _, by_centre = orders(scores, mid_centre)
    mid = by_centre[~np.isin(by_centre, np.concatenate([high, low]))][:k]
    subsets = {"high": high, "mid": mid, "low": low}
    if level != "mix":
        return sets[level], subsets
    return np.concatenate([subsets[s] for s in SUBSETS]), subsets


def read_scores_file(
    path: str | Path, n_samples: int, train: np.ndarray, key: str | None = None, n_fit: int | None = None
) -> np.ndarray:
    """The scores of the training samples ``train`` from a ``.npz`` file whose entry i scores
    prepared sample i; never unpickles (``allow_pickle=False``), checks length and range.

    The file holds one score per prepared sample (``n_samples``) or, as the official files, per
    sample of the dataset's training files: the ``n_fit`` samples of train and val, which come
    first (CIFAR: 50,000 of 60,000). Any other length is a file of another dataset or a cut one."""
    path = Path(path)
    if not path.is_file():
        raise GrmuError(f"memorization scores file not found: {path} (memorization.file, under data_dir)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = [key] if key else [k for k in FILE_KEYS if k in z.files]
            if not keys or keys[0] not in z.files:
                raise GrmuError(
                    f"{path} has no array {key or ' or '.join(FILE_KEYS)}; it holds: "
                    f"{', '.join(z.files) or 'nothing'} (set memorization.key)"
                )
            raw = z[keys[0]]
    except GrmuError:
        raise
    except Exception as e:  # zipfile, pickle refusal (allow_pickle=False), a damaged array
        raise GrmuError.wrap(f"cannot read memorization scores from {path}", e) from e
    if raw.dtype.kind not in "fiu" or raw.ndim != 1:
        raise GrmuError(f"{path}: '{keys[0]}' must be a 1-D array of numbers, got {raw.dtype} of shape {raw.shape}")
    if len(raw) <= int(train.max()):
        raise GrmuError(
            f"{path}: '{keys[0]}' holds {len(raw)} scores, but the training samples go up to index "
            f"{int(train.max())} of the prepared dataset ({n_samples} samples)"
        )
    valid = {n_samples: "one per prepared sample"}
    if n_fit is not None and n_fit != n_samples:
        valid[n_fit] = "one per sample of the training files"
    if len(raw) not in valid:
        want = " or ".join(f"{n} ({what})" for n, what in valid.items())
        raise GrmuError(
            f"{path}: '{keys[0]}' holds {len(raw)} scores; this prepared dataset needs {want}: "
            "a file of another dataset?"
        )
    scores = raw[train].astype(np.float64)
    if not np.isfinite(scores).all() or scores.min() < -1 or scores.max() > 1:
        raise GrmuError(
            f"{path}: '{keys[0]}' must hold finite memorization scores in [-1, 1], got values in "
            f"[{np.nanmin(scores):g}, {np.nanmax(scores):g}]"
        )
    return scores


def save_scores(path: str | Path, train: np.ndarray, scores: np.ndarray, score: str, info: dict) -> None:
    """``index`` (prepared sample indices of the train split) and ``score`` arrays, the score's
    name and the run info (seed, versions; JSON), written to a temporary file and renamed."""
    import json

    from grmu.runtime import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            index=np.asarray(train, dtype=np.int64),
            score=np.asarray(scores, dtype=np.float64),
            name=np.array(score),
            run=np.array(json.dumps(info, sort_keys=True)),
        )


def load_scores(path: str | Path, train: np.ndarray) -> tuple[str, np.ndarray]:
    """``(name, scores)`` of a memorization stage's output, checked against the train split."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            name, index, scores = str(z["name"]), z["index"], z["score"]
    except Exception as e:
        raise GrmuError.wrap(f"cannot read the memorization scores {path} (rerun `dvc repro memorization`)", e) from e
    if name == "none":
        raise GrmuError(f"{path} holds no scores (memorization.score resolved to none); set memorization.score")
    if len(index) != len(train) or not (index == train).all() or len(scores) != len(train):
        raise GrmuError(
            f"the memorization scores {path} are not those of this train split; rerun `dvc repro memorization`"
        )
    return name, scores
