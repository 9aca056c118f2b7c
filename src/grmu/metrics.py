"""Every metric of the paper (and its appendix), each returned x100 like the paper's tables.

Notation: ``pred`` predicted classes, ``y`` targets, ``a`` sensitive attributes. The forget
groups are a list of (y, a) pairs; ``T`` = their targets and ``S`` = their sensitive values.
For binary data with one forget group (t, s), ``y in T`` is ``y == t`` and ``a in S`` is ``a == s``.

Pure formulas over numpy arrays: no torch here (inference lives in ``grmu.inference``).
"""

from __future__ import annotations

import numpy as np

METRIC_KEYS = ("RA", "UA", "TA", "MIA", "EO", "GA")  # the paper's avg. gap set


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """100 * mean(pred == y); NaN on an empty set."""
    return float(np.mean(pred == y) * 100) if len(y) else float("nan")


def group_accuracies(pred, y, g, n_groups: int) -> list[float]:
    """Accuracy within each group g (NaN where the group has no sample)."""
    return [accuracy(pred[g == k], y[g == k]) for k in range(n_groups)]


def worst_group_accuracy(pred, y, g, n_groups: int) -> float:
    """WG = min over groups present of the group's accuracy (paper App. B.6)."""
    accs = [v for v in group_accuracies(pred, y, g, n_groups) if not np.isnan(v)]
    return min(accs)


def in_groups(y, a, groups) -> np.ndarray:
    """Mask of samples whose (y, a) is one of ``groups``."""
    mask = np.zeros(len(y), dtype=bool)
    for t, s in groups:
        mask |= (y == t) & (a == s)
    return mask


def forget_group_accuracy(pred, y, a, groups) -> float:
    """GA = accuracy on the test samples of the forget group(s): (y, a) in ``groups``."""
    m = in_groups(y, a, groups)
    return accuracy(pred[m], y[m])


def _binarise(y, a, groups):
    T = sorted({t for t, _ in groups})
    S = sorted({s for _, s in groups})
    return np.isin(y, T), np.isin(a, S), T


def equalized_odds(pred, y, a, groups) -> float:
    """EO = ½ (|acc[0][0] − acc[0][1]| + |acc[1][0] − acc[1][1]|).

    ``acc[t][s]`` is the accuracy of the (multi-class) prediction within the cell
    ``t = [y in T]``, ``s = [a in S]`` (fact sheet §6). For binary tasks this is
    ½(|ΔTPR| + |ΔFPR|) across the sensitive attribute: the paper's Eq. 11.
    """
    ta, sa, _ = _binarise(y, a, groups)
    correct = pred == y
    gaps = []
    for t in (False, True):
        cells = [correct[(ta == t) & (sa == s)] for s in (False, True)]
        accs = [c.mean() * 100 if len(c) else np.nan for c in cells]
        gaps.append(abs(accs[0] - accs[1]))
    return float(np.nanmean(gaps)) if not all(np.isnan(gaps)) else float("nan")


def demographic_parity(pred, y, a, groups) -> float:
    """DP = |P(Ŷ=1 | A=0) − P(Ŷ=1 | A=1)|, with Ŷ=1 meaning "predicted class in T"
    and A=1 meaning "a in S" (paper App. B.6)."""
    _, sa, T = _binarise(y, a, groups)
    yhat = np.isin(pred, T)
    if sa.all() or (~sa).all():
        return float("nan")
    return float(abs(yhat[~sa].mean() - yhat[sa].mean()) * 100)


def equal_opportunity(pred, y, a, groups) -> float:
    """EP = |P(Ŷ=1 | Y=1, A=0) − P(Ŷ=1 | Y=1, A=1)|, binarised as in ``demographic_parity``."""
    ta, sa, T = _binarise(y, a, groups)
    yhat = np.isin(pred, T)
    pos0, pos1 = ta & ~sa, ta & sa
    if not pos0.any() or not pos1.any():
        return float("nan")
    return float(abs(yhat[pos0].mean() - yhat[pos1].mean()) * 100)


MIA_GRID = [(n, c) for n in (20, 50, 100) for c in ("gini", "entropy")]


def mia_efficacy(loss_remaining, loss_val, loss_forget, loss_test, mode: str = "best_of_grid") -> dict:
    """MIA-efficacy (paper Eq. 10): ``100 · TN / |D_f|``.

    A random forest learns member (remaining-set losses, label 1) vs non-member
    (validation losses, label 0) from the per-sample cross-entropy loss alone; efficacy is
    the share of forget samples it calls non-members. ``best_of_grid`` (the paper's code and
    our default) fits the 6 forests n_estimators ∈ {20, 50, 100} × criterion ∈ {gini,
    entropy} (random_state 0) and reports the highest efficacy (the first in ``MIA_GRID`` order
    on a tie), which is optimistic; ``single`` fits only (100, gini). Also returns that forest's
    AUC of P(member) on forget (1) vs test (0).

    A forest of n trees is the first n trees of the forest of 100 (scikit-learn draws the trees'
    seeds in order from ``random_state``), so one forest of 100 trees is grown per criterion (200
    trees instead of 340) and the smaller forests' P(member) are its running sums over its trees,
    added in the order and divided as ``predict_proba`` does: every forest's answers are the ones a
    fresh fit of that size gives (tests/test_metrics.py compares them). The trees are grown on every
    core this process may use (n_jobs=-1; each tree's seed is drawn before they are spread).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    X = np.concatenate([loss_remaining, loss_val]).reshape(-1, 1)
    lab = np.concatenate([np.ones(len(loss_remaining)), np.zeros(len(loss_val))])
    scored = np.concatenate([loss_forget, loss_test]).reshape(-1, 1).astype(np.float32)  # as predict_proba
    grid = MIA_GRID if mode == "best_of_grid" else [(100, "gini")]
    found = {}  # (n, criterion) -> (efficacy, P(member) on forget + test)
    for crit in dict.fromkeys(c for _, c in grid):
        sizes = [n for n, c in grid if c == crit]
        rf = RandomForestClassifier(n_estimators=max(sizes), criterion=crit, random_state=0, n_jobs=-1).fit(X, lab)
        total = np.zeros((len(scored), len(rf.classes_)))
        for n, tree in enumerate(rf.estimators_, 1):
            total += tree.predict_proba(scored, check_input=False)
            if n in sizes:
                proba = total / n
                is_member = rf.classes_.take(np.argmax(proba, axis=1)) == 1  # ``predict``
                found[n, crit] = (float((~is_member[: len(loss_forget)]).mean() * 100), proba[:, -1])
    n, crit = max(grid, key=lambda key: (found[key][0], -grid.index(key)))  # the first of the best
    truth = np.concatenate([np.ones(len(loss_forget)), np.zeros(len(loss_test))])
    eff, scores = found[n, crit]
    return {"MIA": eff, "MIA_AUC": float(roc_auc_score(truth, scores) * 100), "MIA_config": f"{n}-{crit}"}


def svc_mia_efficacy(conf_remaining, conf_test, conf_forget) -> float:
    """MIA_SVC, the SalUn-style "forget efficacy" of the sharp-unlearn papers (fact sheet §5), x100.

    An SVM (``SVC(C=3, gamma='auto', kernel='rbf')``) learns member (the first ``len(test)``
    remaining samples in index order, label 1) vs non-member (the test set, label 0) from the
    softmax confidence of the true class ``p_y`` alone; efficacy is the share of forget samples
    it calls non-members. Fit unshuffled (members, then non-members), as SalUn's code; upstream
    sharp-unlearn shuffles the shadow set without a seed, and with overlapping confidences the
    fit then depends on the order (libsvm stops at a tolerance): its efficacy varies by run.
    """
    from sklearn.svm import SVC

    members = np.asarray(conf_remaining)[: len(conf_test)]
    X = np.concatenate([members, conf_test]).reshape(-1, 1)
    lab = np.concatenate([np.ones(len(members)), np.zeros(len(conf_test))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(X, lab)
    return float((clf.predict(np.reshape(conf_forget, (-1, 1))) == 0).mean() * 100)


def avg_gap(model: dict, reference: dict, keys=METRIC_KEYS) -> float:
    """avg. gap = 100 − mean over keys of |m_model − m_reference| (same seed and ratio)."""
    return float(100 - np.mean([abs(model[k] - reference[k]) for k in keys]))


def tow(model: dict, reference: dict) -> float:
    """ToW = 100 · Π over {RA, UA, TA} of (1 − |Δ| / 100)."""
    return float(100 * np.prod([1 - abs(model[k] - reference[k]) / 100 for k in ("RA", "UA", "TA")]))


def tow_mia(model: dict, reference: dict) -> float:
    """ToW-MIA = 100 · Π over {MIA_SVC, RA, TA} of (1 − |Δ| / 100) (upstream ``analysis_mia.py``,
    with MIA_SVC as a percentage: its |ΔM| on [0, 1] is |ΔMIA_SVC| / 100)."""
    return float(100 * np.prod([1 - abs(model[k] - reference[k]) / 100 for k in ("MIA_SVC", "RA", "TA")]))


EVAL_SETS = ("remaining", "forget", "val", "test")


def subset_accuracies(pred: np.ndarray, y: np.ndarray, subsets: dict) -> dict:
    """``acc_<name>``: accuracy on each named index set (the memorization subsets high, mid, low)."""
    return {f"acc_{name}": accuracy(pred[idx], y[idx]) for name, idx in subsets.items()}


def split_metrics(
    pred,
    loss,
    y,
    a,
    g,
    sets: dict,
    groups,
    n_groups: int,
    mia_mode: str = "best_of_grid",
    *,
    fairness: bool = True,
    group_accuracy: bool = True,
) -> dict:
    """Every metric of one model on one (ratio, seed) split (fact sheet §2.5, §6).

    ``pred`` (predicted class), ``loss`` (per-sample cross-entropy), ``y``, ``a``, ``g``:
    arrays indexed by sample. ``sets`` maps each of ``EVAL_SETS`` to sample indices:
    ``remaining`` (RA; MIA members), ``forget`` (UA; MIA targets), ``val`` (MIA non-members,
    VA) and ``test`` (TA, MIA AUC negatives, MIA_SVC non-members, and every group and fairness
    metric); MIA_SVC's members are the first ``len(test)`` remaining samples. The
    forget-group metrics (GA, EO, DP, EP) use every pair of ``groups``.

    A dataset without a group attribute has no fairness metrics: ``fairness=False`` omits EO,
    DP and EP (they are undefined, not NaN), ``group_accuracy=False`` omits GA (for a random
    forget set of such a dataset the "forget group" means nothing).
    """
    r, f, v, t = (np.asarray(sets[k]) for k in EVAL_SETS)
    yt, at, gt, pt = y[t], a[t], g[t], pred[t]
    out = {"RA": accuracy(pred[r], y[r]), "UA": accuracy(pred[f], y[f]), "TA": accuracy(pt, yt)}
    out.update(mia_efficacy(loss[r], loss[v], loss[f], loss[t], mia_mode))
    conf = np.exp(-np.asarray(loss, dtype=np.float64))  # p_y: the loss is -log p_y
    out["MIA_SVC"] = svc_mia_efficacy(conf[r], conf[t], conf[f])
    if fairness:
        out["EO"] = equalized_odds(pt, yt, at, groups)
    if group_accuracy:
        out["GA"] = forget_group_accuracy(pt, yt, at, groups)
    if fairness:
        out.update({"DP": demographic_parity(pt, yt, at, groups), "EP": equal_opportunity(pt, yt, at, groups)})
    out.update(
        {
            "WG": worst_group_accuracy(pt, yt, gt, n_groups),
            "VA": accuracy(pred[v], y[v]),
            "group_acc": group_accuracies(pt, yt, gt, n_groups),
        }
    )
    return out
