"""Forgetting audit: per-example unlearning attacks and the NeurIPS 2023 unlearning competition's
forgetting quality, as pure formulas over arrays (docs/audit.md has the definitions and sources).

- U-LiRA (Hayes et al. 2024, arXiv 2403.01218): per example, the target model's logit-scaled
  confidence is scored by a likelihood ratio of two Gaussians fitted to shadow models that trained
  on the example and then unlearned it ("in") and shadow models that never saw it ("out").
- The competition's forgetting quality (Triantafillou et al. 2024, arXiv 2406.09073, and the
  official scorer google-deepmind/unlearning_evaluation): per forget example, the outputs of N
  unlearned and N retrained models, a family of threshold attacks, an empirical ε per example,
  ε binned into points 2^-k, F the mean points, and the final score F times two utility ratios.

Array conventions: ``outputs[m, j]`` is model m's output on example j (models along axis 0).
Every function refuses input that would give an untrustworthy number with a one-line
``GrmuError`` naming the bad value. Probabilities and rates are fractions in [0, 1], not x100.

Pure numpy (+ scikit-learn for the ROC): no torch here.
"""

from __future__ import annotations

import math

import numpy as np

from grmu import GrmuError

COMPETITION_DELTA = 1e-5  # δ of the official scorer
COMPETITION_EPS_CAP = 50.0  # ε reported for perfectly separable or degenerate examples
COMPETITION_THRESHOLDS_PER_UNIT = 100  # decision thresholds per unit of the output's scale
COMPETITION_BUFFER = 2.0  # how far the interval attacks' edges reach past the data
COMPETITION_PEAKY_RATIO = 0.01  # range ratio below which one side counts as a point mass
COMPETITION_BIN_WIDTH = 0.5  # width of the ε bins of the forgetting quality
ATTACK_RULES = ("single", "double")
SIDES = ("original", "unlearned", "retrained")  # the audit's model populations (grmu.stages.audit_models)
ACCURACIES = ("retain", "test", "forget")  # the accuracies (x100) recorded per audit model
VARIANCES = ("per_example", "global")
CENTERS = ("mean", "median")


# --------------------------------------------------------------------------- input checks


def _array(x, name: str, ndim: int, where: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise GrmuError(f"{where}: {name} must have {ndim} dimension(s); got shape {a.shape}")
    return a


def _finite(a: np.ndarray, name: str, where: str, allow_nan: bool = False) -> None:
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise GrmuError(f"{where}: {name}{list(idx)} = {a[idx]} is not a finite number")


# --------------------------------------------------------------------------- the attack's feature


def logit_confidence(logits, y, floor: float | None = None) -> np.ndarray:
    """φ = log(p_y / (1 − p_y)), the logit-scaled confidence of the true class (LiRA's feature,
    used by U-LiRA and by the competition's scorer).

    Computed from the logits without forming probabilities: with z the logits and LSE the
    log-sum-exp, log p_y = z_y − LSE(z) and log(1 − p_y) = LSE(z_{k≠y}) − LSE(z), so
    φ = z_y − LSE(z_{k≠y}); it stays exact where p_y rounds to 1 in float64.

    ``logits``: shape (..., n, C) with C ≥ 2 (e.g. (models, n, C) for an ensemble); ``y``: the n
    integer labels. ``floor`` (None: exact): the competition's code adds 1e-45 to p_y and to
    1 − p_y before the logs, which bounds |φ| by about 103.6; ``floor=1e-45`` reproduces it.
    """
    where = "logit_confidence"
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 2:
        raise GrmuError(f"{where}: logits must have shape (..., n, classes); got shape {z.shape}")
    n_classes = z.shape[-1]
    if n_classes < 2:
        raise GrmuError(f"{where}: logits have {n_classes} class(es); the confidence ratio needs at least 2")
    labels = np.asarray(y)
    if labels.shape != z.shape[-2:-1]:
        raise GrmuError(f"{where}: y has shape {labels.shape}; logits of shape {z.shape} need ({z.shape[-2]},)")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise GrmuError(f"{where}: y must hold integer class labels; got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise GrmuError(f"{where}: label {bad} is outside the {n_classes} classes 0..{n_classes - 1}")
    _finite(z, "logits", where)
    if floor is not None and not 0 < floor < 1:
        raise GrmuError(f"{where}: floor={floor} must be in (0, 1) or None")
    idx = np.broadcast_to(labels, z.shape[:-1])[..., None]
    z_y = np.take_along_axis(z, idx, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    top = others.max(axis=-1)  # finite: there is at least one other class
    lse_others = top + np.log(np.exp(others - top[..., None]).sum(axis=-1))
    if floor is None:
        return z_y - lse_others
    lse_all = np.logaddexp(z_y, lse_others)
    log_floor = math.log(floor)
    return np.logaddexp(z_y - lse_all, log_floor) - np.logaddexp(lse_others - lse_all, log_floor)


# --------------------------------------------------------------------------- U-LiRA


def _gaussian_logpdf(x, mean, var):
    return -0.5 * np.log(2 * np.pi * var) - (x - mean) ** 2 / (2 * var)


def _fit(phi: np.ndarray, side: str, variance: str, ddof: int, center: str, where: str):
    """Per-example location (``center``) and the variance of ``variance`` kind (around the
    per-example mean) of a (models, n) array whose NaN entries mark models that are not on this
    side for that example."""
    counts = np.sum(~np.isnan(phi), axis=0)
    short = np.flatnonzero(counts < max(2, ddof + 1))
    if short.size:
        j = int(short[0])
        raise GrmuError(
            f"{where}: example {j} has {counts[j]} '{side}' shadow model(s); "
            f"a Gaussian fit per example needs at least {max(2, ddof + 1)}"
        )
    mean = np.nanmean(phi, axis=0)
    squares = np.nansum((phi - mean) ** 2, axis=0)
    if variance == "per_example":
        var = squares / (counts - ddof)
    else:  # one variance per side: the deviations from each example's own mean, pooled
        var = np.full(phi.shape[1], squares.sum() / (counts.sum() - ddof * phi.shape[1]))
    flat = np.flatnonzero(var <= 0)
    if flat.size:
        j = int(flat[0])
        raise GrmuError(f"{where}: the '{side}' shadow confidences of example {j} are all equal (zero variance)")
    return (mean if center == "mean" else np.nanmedian(phi, axis=0)), var


def ulira_scores(
    phi_target, phi_in, phi_out, variance: str = "per_example", ddof: int = 0, center: str = "mean"
) -> np.ndarray:
    """U-LiRA's per-example score: log Λ_j = log N(φ_j; μ_in,j, σ²_in,j) − log N(φ_j; μ_out,j, σ²_out,j).

    ``phi_target`` (n,): the target (unlearned) model's logit-scaled confidence on each example.
    ``phi_in`` (N_in, n): shadow models that trained on example j and then unlearned it;
    ``phi_out`` (N_out, n): shadow models that never trained on it (retrained without it). A NaN
    entry means "this shadow model is not on this side for this example" (shadow models trained
    on random halves); every example needs at least 2 models per side.

    ``variance``: ``per_example`` (default; LiRA's online attack, per-example means and
    variances) or ``global`` (per-example means, one variance per side pooled over all
    examples: LiRA's fixed-variance variant for few shadow models; LiRA's reference code takes
    the spread of all values at once, which also counts the spread between the examples'
    means). ``ddof``: 0 (default) is the maximum-likelihood fit (``np.std``, as LiRA's code).
    ``center``: the Gaussians' location, ``mean`` (default; LiRA's paper, Algorithm 1) or
    ``median`` (LiRA's reference code, which U-LiRA's authors ran on unlearned shadow models);
    the variance is around the mean in both.

    A higher score means "more likely trained on, then unlearned"; Λ > 1 (score > 0) is the
    likelihood-ratio decision.
    """
    where = "ulira_scores"
    if variance not in VARIANCES:
        raise GrmuError(f"{where}: variance={variance!r}; valid: {', '.join(VARIANCES)}")
    if ddof not in (0, 1):
        raise GrmuError(f"{where}: ddof={ddof}; valid: 0, 1")
    if center not in CENTERS:
        raise GrmuError(f"{where}: center={center!r}; valid: {', '.join(CENTERS)}")
    target = _array(phi_target, "phi_target", 1, where)
    fits = []
    for name, phi, side in (("phi_in", phi_in, "in"), ("phi_out", phi_out, "out")):
        a = _array(phi, name, 2, where)
        if a.shape[1] != target.shape[0]:
            raise GrmuError(f"{where}: {name} has shape {a.shape}; phi_target has {target.shape[0]} examples")
        _finite(a, name, where, allow_nan=True)
        fits.append(_fit(a, side, variance, ddof, center, where))
    _finite(target, "phi_target", where)
    (mu_in, var_in), (mu_out, var_out) = fits
    return _gaussian_logpdf(target, mu_in, var_in) - _gaussian_logpdf(target, mu_out, var_out)


# --------------------------------------------------------------------------- attack quality


def attack_metrics(
    scores, is_member, fpr_levels=(0.01, 0.001), threshold: float | None = 0.0, strict_fpr: bool = False
) -> dict:
    """AUC, TPR at low FPR and accuracies of a membership attack (higher score = "member").

    The ROC has one point per decision "score ≥ t", for t at every distinct score and +∞
    (the point (0, 0)). ``TPR@FPR=<level>`` is the highest TPR among the points with
    FPR ≤ level (``strict_fpr``: FPR < level, as LiRA's reference code); with fewer than
    1/level non-members only FPR = 0 qualifies. ``AUC`` is the area under that curve: the share
    of (member, non-member) pairs ranked right, ties counted ½. ``best_balanced_accuracy`` is
    the largest 1 − (FPR + FNR)/2 over the ROC's points (LiRA's code reports it as the
    attack's accuracy; on a balanced set, as U-LiRA's targets are, it is the best accuracy of
    any threshold). ``accuracy`` (unless ``threshold`` is None) is the share of examples with
    (score > threshold) == is_member at one fixed threshold; the default 0 is U-LiRA's Λ > 1.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    where = "attack_metrics"
    s = _array(scores, "scores", 1, where)
    m = np.asarray(is_member)
    if m.shape != s.shape:
        raise GrmuError(f"{where}: is_member has shape {m.shape}; scores have shape {s.shape}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise GrmuError(f"{where}: is_member must be boolean (or 0/1); got values {np.unique(m)[:5].tolist()}")
        m = m.astype(bool)
    _finite(s, "scores", where)
    n_in, n_out = int(m.sum()), int((~m).sum())
    if n_in == 0 or n_out == 0:
        raise GrmuError(f"{where}: {n_in} member(s) and {n_out} non-member(s); both are needed")
    fpr, tpr, _ = roc_curve(m, s, drop_intermediate=False)
    out = {"AUC": float(roc_auc_score(m, s))}
    for level in fpr_levels:
        if not (0 < level < 1 if strict_fpr else 0 <= level < 1):
            raise GrmuError(f"{where}: FPR level {level} must be in {'(0, 1)' if strict_fpr else '[0, 1)'}")
        out[f"TPR@FPR={level:g}"] = float(tpr[(fpr < level) if strict_fpr else (fpr <= level)].max())
    out["best_balanced_accuracy"] = float(np.max(1 - (fpr + (1 - tpr)) / 2))
    if threshold is not None:
        out["accuracy"] = float(np.mean((s > threshold) == m))
    out.update({"n_members": n_in, "n_nonmembers": n_out})
    return out


# --------------------------------------------------------------------------- the competition's ε


def _threshold_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """ε of each decision rule: ∞ where FPR = FNR = 0 (perfect separation), NaN (discarded)
    where exactly one of them is 0, else max(0, log((1 − δ − FPR)/FNR), log((1 − δ − FNR)/FPR));
    a term whose numerator is not positive is no candidate (NaN when both are not)."""
    eps = np.full(fpr.shape, np.nan)
    ok = (fpr > 0) & (fnr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr[ok]) - np.log(fnr[ok])
        b = np.log(1 - delta - fnr[ok]) - np.log(fpr[ok])
    best = np.fmax(a, b)
    eps[ok] = np.where(np.isnan(best), np.nan, np.maximum(best, 0.0))
    eps[(fpr == 0) & (fnr == 0)] = np.inf
    return eps


def _count_at_or_above(sample: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Count of the sorted ``sample`` at or above each threshold."""
    return len(sample) - np.searchsorted(sample, t, side="left")


def _count_inside(sample: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Count of the sorted ``sample`` within [left, right] (0 where left > right)."""
    n = np.searchsorted(sample, right, side="right") - np.searchsorted(sample, left, side="left")
    return np.maximum(n, 0)


def _example_epsilon(u, r, delta, eps_cap, per_unit, buffer, peaky_ratio, rules) -> float:
    u, r = np.sort(u), np.sort(r)
    # the positive class is the side with the larger median (a tie: the unlearned side)
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    range_pos, range_neg = pos[-1] - pos[0], neg[-1] - neg[0]
    largest, smallest = max(range_pos, range_neg), min(range_pos, range_neg)
    if largest == 0:  # both sides are point masses: identical (ε 0) or perfectly separable
        return 0.0 if pos[0] == neg[0] else eps_cap
    if smallest / largest < peaky_ratio:
        return eps_cap
    found = []
    if "single" in rules:  # "output ≥ t" predicts the positive class
        lo, hi = min(pos[0], neg[0]), max(pos[-1], neg[-1])
        t = np.linspace(lo, hi, math.ceil((hi - lo) * per_unit))
        k_pos, k_neg = _count_at_or_above(pos, t), _count_at_or_above(neg, t)
        found.append(_threshold_epsilons(k_neg / len(neg), (len(pos) - k_pos) / len(pos), delta))
    if "double" in rules:  # "left ≤ output ≤ right" predicts the peakier side (a tie: neg)
        inner, outer = (pos, neg) if range_pos < range_neg else (neg, pos)
        width = smallest
        lo, hi = inner[0] + width - buffer, inner[-1] + buffer
        right = np.linspace(lo, hi, math.ceil((hi - lo) * per_unit))
        left = np.linspace(right - width - buffer, right - width + buffer, math.ceil(2 * buffer * per_unit), axis=1)
        right = np.broadcast_to(right[:, None], left.shape)
        k_in, k_out = _count_inside(inner, left, right), _count_inside(outer, left, right)
        fpr, fnr = k_out / len(outer), (len(inner) - k_in) / len(inner)
        found.append(_threshold_epsilons(fpr.ravel(), fnr.ravel(), delta))
    eps = np.concatenate(found)
    eps = eps[~np.isnan(eps)]
    return float(min(eps.max(), eps_cap)) if eps.size else math.nan


def example_epsilon(
    unlearned_outputs,
    retrained_outputs,
    delta: float = COMPETITION_DELTA,
    *,
    eps_cap: float = COMPETITION_EPS_CAP,
    thresholds_per_unit: int = COMPETITION_THRESHOLDS_PER_UNIT,
    buffer: float = COMPETITION_BUFFER,
    peaky_ratio: float = COMPETITION_PEAKY_RATIO,
    rules=ATTACK_RULES,
) -> np.ndarray:
    """The competition's empirical ε of each forget example, in [0, eps_cap].

    ``unlearned_outputs`` (N_u, n) and ``retrained_outputs`` (N_r, n): one output per model and
    forget example (the competition: the logit-scaled confidence, ``logit_confidence``, of N = 512
    unlearned and 512 retrained models). Per example, with "positive" the side whose median is
    larger:

    - if one side's range (max − min) is below ``peaky_ratio`` times the other's, ε = eps_cap
      (both ranges 0: ε = 0 if the two point masses coincide, else eps_cap);
    - else every attack of the families in ``rules`` gives (FPR, FNR) over the models:
      ``single``: "output ≥ t" means positive, for ceil(range · thresholds_per_unit) evenly
      spaced t from the smallest to the largest output of both sides (range = that span);
      ``double``: an output in [l, r] means the peakier side (the one of smaller range w; a tie:
      the non-positive side), for right edges r evenly spaced from min + w − buffer to
      max + buffer of that side (ceil(2 · buffer · thresholds_per_unit) of them, as max − min = w)
      and, for each r, ceil(2 · buffer · thresholds_per_unit) left edges evenly spaced from
      r − w − buffer to r − w + buffer;
    - an attack with FPR = FNR = 0 gives ε = ∞; one with exactly one of them 0 is discarded
      (taken as too few models); the others give
      max(0, log((1 − δ − FPR)/FNR), log((1 − δ − FNR)/FPR));
    - ε of the example = the largest over the attacks, capped at ``eps_cap``.

    Defaults are the official scorer's (δ = 1e-5, cap 50, 100 thresholds per unit, buffer 2,
    peaky ratio 0.01, both families).
    """
    where = "example_epsilon"
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or not 0 < delta < 1:
        raise GrmuError(f"{where}: delta={delta} must be a number in (0, 1)")
    delta = float(delta)
    if not eps_cap > 0:
        raise GrmuError(f"{where}: eps_cap={eps_cap} must be positive")
    if not (isinstance(thresholds_per_unit, int) and thresholds_per_unit >= 1):
        raise GrmuError(f"{where}: thresholds_per_unit={thresholds_per_unit} must be a positive integer")
    if not buffer > 0:
        raise GrmuError(f"{where}: buffer={buffer} must be positive")
    if not 0 <= peaky_ratio < 1:
        raise GrmuError(f"{where}: peaky_ratio={peaky_ratio} must be in [0, 1)")
    rules = tuple(rules)
    if not rules or set(rules) - set(ATTACK_RULES):
        raise GrmuError(f"{where}: rules={rules}; valid: a non-empty subset of {', '.join(ATTACK_RULES)}")
    u = _array(unlearned_outputs, "unlearned_outputs", 2, where)
    r = _array(retrained_outputs, "retrained_outputs", 2, where)
    if u.shape[1] != r.shape[1]:
        raise GrmuError(
            f"{where}: unlearned_outputs has shape {u.shape}, retrained_outputs {r.shape}: "
            "the same examples (axis 1) are needed"
        )
    for name, a in (("unlearned_outputs", u), ("retrained_outputs", r)):
        if a.shape[0] < 2:
            raise GrmuError(f"{where}: {name} has {a.shape[0]} model(s) (axis 0); at least 2 are needed")
        _finite(a, name, where)
    eps = np.empty(u.shape[1])
    for j in range(u.shape[1]):
        eps[j] = _example_epsilon(u[:, j], r[:, j], delta, eps_cap, thresholds_per_unit, buffer, peaky_ratio, rules)
        if math.isnan(eps[j]):
            raise GrmuError(
                f"{where}: example {j}: no attack has both FPR and FNR above 0, so ε is undefined; "
                "use more models or more thresholds_per_unit"
            )
    return eps


# --------------------------------------------------------------------------- forgetting quality


def epsilon_scores(eps, n_models: int, bin_width: float = COMPETITION_BIN_WIDTH, max_epsilon=None) -> np.ndarray:
    """Each example's points: 2^-k where ε lies in the k-th bin [k · w, (k + 1) · w), k = 0, 1, ...,
    over the bins that end at or below ``max_epsilon`` (default ceil(ln(n_models − 1)), the
    largest ε that n_models models per side can show); ε beyond the last bin scores 0.

    The official scorer: w = 0.5 and n_models = the number of unlearned models (512: 14 bins,
    1 down to 2^-13).
    """
    where = "epsilon_scores"
    e = _array(eps, "eps", 1, where)
    _finite(e, "eps", where)
    if (e < 0).any():
        raise GrmuError(f"{where}: eps[{int(np.argmax(e < 0))}] = {e[e < 0][0]} is negative")
    if not bin_width > 0:
        raise GrmuError(f"{where}: bin_width={bin_width} must be positive")
    if max_epsilon is None:
        if not (isinstance(n_models, (int, np.integer)) and n_models >= 2):
            raise GrmuError(f"{where}: n_models={n_models} must be an integer of at least 2")
        max_epsilon = math.ceil(math.log(n_models - 1))
    elif not (isinstance(max_epsilon, (int, float)) and max_epsilon > 0):
        raise GrmuError(f"{where}: max_epsilon={max_epsilon} must be a positive number")
    n_bins = math.floor(max_epsilon / bin_width)
    if n_bins < 1:
        raise GrmuError(
            f"{where}: max_epsilon={max_epsilon} (n_models={n_models}) leaves no ε bin of width {bin_width}; "
            "use more models"
        )
    k = np.floor(e / bin_width)
    return np.where(k < n_bins, np.exp2(-np.minimum(k, n_bins)), 0.0)


def forgetting_quality(eps, n_models: int, bin_width: float = COMPETITION_BIN_WIDTH, max_epsilon=None) -> float:
    """F = the mean over the forget examples of ``epsilon_scores``: 1 when every ε < bin_width
    (indistinguishable), 0 when every ε is beyond the last bin."""
    scores = epsilon_scores(eps, n_models, bin_width, max_epsilon)
    if scores.size == 0:
        raise GrmuError("forgetting_quality: eps is empty: no forget example to score")
    return float(scores.mean())


def competition_score(F: float, ra, ta, ra_ref, ta_ref) -> float:
    """The competition's final score F · (RA / RA_ref) · (TA / TA_ref).

    RA, TA: retain and test accuracy of the unlearned models, RA_ref, TA_ref: of the retrained
    ones; each a number or one value per model (then their mean is used, as the official
    scorer). Any unit (fraction or percent) as long as both sides use the same. The ratios are
    not capped: an unlearned model more accurate than retraining raises the score above F.
    """
    where = "competition_score"
    if not (math.isfinite(F) and 0 <= F <= 1):
        raise GrmuError(f"{where}: F={F} must be in [0, 1]")
    means = {}
    for name, v in (("ra", ra), ("ta", ta), ("ra_ref", ra_ref), ("ta_ref", ta_ref)):
        a = np.asarray(v, dtype=np.float64).ravel()
        if a.size == 0:
            raise GrmuError(f"{where}: {name} is empty")
        _finite(a, name, where)
        means[name] = float(a.mean())
    for name in ("ra_ref", "ta_ref"):
        if means[name] <= 0:
            raise GrmuError(f"{where}: {name}={means[name]} must be positive (it divides)")
    return float(F * (means["ra"] / means["ra_ref"]) * (means["ta"] / means["ta_ref"]))


# --------------------------------------------------------------------------- per group


def _group_keys(groups, n: int, expected, where: str):
    g = np.asarray(groups)
    if g.shape != (n,):
        raise GrmuError(f"{where}: groups has shape {g.shape}; the values need ({n},)")
    present = [x.item() if hasattr(x, "item") else x for x in np.unique(g)]
    if expected is None:
        return g, present
    expected = [x.item() if hasattr(x, "item") else x for x in expected]
    unknown = [x for x in present if x not in expected]
    if unknown:
        raise GrmuError(f"{where}: group {unknown[0]!r} is not one of the expected groups {expected}")
    empty = [x for x in expected if x not in present]
    if empty:
        raise GrmuError(f"{where}: group {empty[0]!r} has no example: its value would be undefined")
    return g, expected


def by_group(values, groups, expected=None) -> dict:
    """{group: {"mean": mean of ``values`` over its examples, "n": their count}}.

    ``groups`` labels each value. With ``expected`` (every group that must be reported), a group
    without an example, or a label outside it, is refused naming the group: a mean over no
    example never becomes a result. NaN values are refused too.
    """
    where = "by_group"
    v = _array(values, "values", 1, where)
    _finite(v, "values", where)
    g, keys = _group_keys(groups, len(v), expected, where)
    return {k: {"mean": float(v[g == k].mean()), "n": int((g == k).sum())} for k in keys}


def attack_metrics_by_group(scores, is_member, groups, expected=None, **kwargs) -> dict:
    """``attack_metrics`` within each group; a group with no member or no non-member is refused
    naming the group (its AUC would be undefined)."""
    where = "attack_metrics_by_group"
    s = _array(scores, "scores", 1, where)
    m = np.asarray(is_member)
    g, keys = _group_keys(groups, len(s), expected, where)
    if m.shape != s.shape:
        raise GrmuError(f"{where}: is_member has shape {m.shape}; scores have shape {s.shape}")
    out = {}
    for k in keys:
        sel = g == k
        n_in = int(np.sum(m[sel].astype(bool)))
        if n_in == 0 or n_in == int(sel.sum()):
            raise GrmuError(
                f"{where}: group {k!r} has {n_in} member(s) and {int(sel.sum()) - n_in} non-member(s); both are needed"
            )
        out[k] = attack_metrics(s[sel], m[sel], **kwargs)
    return out


# --------------------------------------------------------------------------- the audit's games


def population_scores(phi_target, phi_in, phi_out) -> np.ndarray:
    """The population attack that U-LiRA is compared with: the same likelihood ratio, but one
    Gaussian per side fitted to the φ of every example at once (no per-example calibration: a
    hard example looks like a forgotten one). Arrays as ``ulira_scores``; a side with zero
    variance is refused."""
    where = "population_scores"
    target = _array(phi_target, "phi_target", 1, where)
    _finite(target, "phi_target", where)
    fits = []
    for name, phi in (("phi_in", phi_in), ("phi_out", phi_out)):
        a = _array(phi, name, 2, where)
        _finite(a, name, where)
        if not a.var() > 0:
            raise GrmuError(f"{where}: {name} has zero variance: every model gives every example the same output")
        fits.append((a.mean(), a.var()))
    (mu_in, var_in), (mu_out, var_out) = fits
    return _gaussian_logpdf(target, mu_in, var_in) - _gaussian_logpdf(target, mu_out, var_out)


def leave_one_out(phi_unlearned, phi_retrained, score=ulira_scores):
    """An attack on a fixed forget set, every model a target once and the others its shadows.

    ``phi_unlearned`` (N, n): N models trained on the forget examples, then unlearned;
    ``phi_retrained`` (N, n): N models never trained on them. Fold k takes out unlearned model k
    and retrained model k (the targets: a member and a non-member of every example) and scores
    both with ``score(phi_target, phi_in, phi_out)`` (``ulira_scores``, ``population_scores``)
    fitted on the other N − 1 per side. Returns ``(scores, is_member)``, each (2N, n): rows
    0..N−1 the unlearned targets (members), rows N..2N−1 the retrained ones. N ≥ 3 (a fit needs
    2 models per side)."""
    where = "leave_one_out"
    u = _array(phi_unlearned, "phi_unlearned", 2, where)
    r = _array(phi_retrained, "phi_retrained", 2, where)
    if u.shape != r.shape:
        raise GrmuError(f"{where}: phi_unlearned has shape {u.shape}, phi_retrained {r.shape}; they must match")
    n_models = u.shape[0]
    if n_models < 3:
        raise GrmuError(f"{where}: {n_models} models per side; at least 3 are needed (2 shadows per side and fold)")
    scores = np.empty((2 * n_models, u.shape[1]))
    for k in range(n_models):
        rest = np.arange(n_models) != k
        for row, target in ((k, u[k]), (n_models + k, r[k])):
            scores[row] = score(target, u[rest], r[rest])
    is_member = np.zeros(scores.shape, dtype=bool)
    is_member[:n_models] = True
    return scores, is_member
