"""Behaviours that no other fast test pinned down by value (issue #25, item 4).

Each test below was checked against the bug it guards against (planted in a copy of ``src``,
the test failing there): several forget groups through ``split_metrics``, influence's
REWEIGHT scale, the direction of Sharp MinMax's forget step, ToW / ToW-MIA with a model on
both sides of its reference, the aggregate stage with a non-default ``eval.reference``, and
data-parallel loss weighting / Group-DRO in two real gloo processes. The expected numbers are
computed here from the fact sheets' definitions, on small asymmetric fixtures.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grmu.methods import UnlearnContext, get_method
from grmu.prepared import Prepared


def synthetic_prep(y, a, split, n_classes, n_attrs, seed=0, dim=4) -> Prepared:
    """A prepared dataset of float feature vectors (no images): enough for a linear model."""
    y, a = np.asarray(y), np.asarray(a)
    x = torch.as_tensor(np.random.default_rng(seed).normal(size=(len(y), dim)), dtype=torch.float32)
    meta = {"n_classes": n_classes, "n_attrs": n_attrs, "input_shape": [dim]}
    return Prepared(np.asarray(split), y, a, a + n_attrs * y, x, meta)


def linear(dim, n_classes, seed=0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    model = torch.nn.Linear(dim, n_classes)
    with torch.no_grad():  # larger weights than the default init: gradients that differ per sample
        model.weight.mul_(3.0)
        model.bias.copy_(torch.linspace(-0.5, 0.7, n_classes))
    return model


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()


# ------------------------------------------------------------------ EO and GA, several forget groups


def _cells(spec):
    """Samples of cells: ``spec`` = [(y, a, n, right, wrong_class)], ``right`` of the ``n``
    predicted ``y``, the others ``wrong_class``."""
    y, a, p = [], [], []
    for yy, aa, n, right, wrong in spec:
        y += [yy] * n
        a += [aa] * n
        p += [yy] * right + [wrong] * (n - right)
    return np.array(y), np.array(a), np.array(p)


def _cell_accuracy(pred, y, a, in_t, in_s):
    """Accuracy (x100) of the multi-class prediction over samples with ``[y in T] == in_t`` and
    ``[a in S] == in_s``, counted sample by sample (the fact sheet's acc[t][s])."""
    hits = [int(p == t) for p, t, s_ in zip(pred, y, a) if (t in T5) == in_t and (s_ in S5) == in_s]
    return 100.0 * sum(hits) / len(hits)


# FairFace-like: 5 target classes x 4 sensitive values; forget targets T = {3, 1} and sensitive
# values S = {0, 2}: the 4 forget groups T x S (multi_group pairs [3, 0], [1, 2])
T5, S5 = (3, 1), (0, 2)
GROUPS5 = [[3, 0], [3, 2], [1, 0], [1, 2]]
TEST5 = [
    # forget cells (y in T, a in S), unequal sizes: 5/6, 1/4, 2/2, 0/4 right -> pooled 8/16 = 50
    (3, 0, 6, 5, 1),  # wrong ones predicted 1: still "in T" (counts wrong: multi-class correctness)
    (3, 2, 4, 1, 1),
    (1, 0, 2, 2, 0),
    (1, 2, 4, 0, 0),
    # y in T, a not in S: 2/4 + 2/2 -> 4/6
    (3, 1, 4, 2, 2),
    (1, 3, 2, 2, 0),
    # y not in T, a in S: 4/4 + 2/4 -> 6/8 (the wrong ones predicted 3, in T)
    (0, 0, 4, 4, 1),
    (2, 2, 4, 2, 3),
    # y not in T, a not in S: 3/4 + 0/4 -> 3/8
    (0, 1, 4, 3, 4),
    (4, 3, 4, 0, 2),
]


def test_split_metrics_eo_and_ga_with_several_forget_groups_by_value(monkeypatch):
    """GA pools the test samples of every forget group (T x S); EO = ½(|acc[0][0] - acc[0][1]|
    + |acc[1][0] - acc[1][1]|) over the cells binarised by y in T and a in S, with multi-class
    correctness (fact sheet §6). Guards: one group only, per-group mean instead of pooled,
    binarised prediction, y and a swapped, the wrong split."""
    import grmu.metrics as M

    # the attacks are not under test here (tests/test_metrics.py): stubs keep this test fast
    monkeypatch.setattr(M, "mia_efficacy", lambda *a, **k: {"MIA": 0.0, "MIA_AUC": 50.0, "MIA_config": "stub"})
    monkeypatch.setattr(M, "svc_mia_efficacy", lambda *a, **k: 0.0)
    yt, at, pt = _cells(TEST5)
    # train / val sets with other accuracies on the same cells, so a metric read from the wrong
    # split changes: forget = samples of the forget groups all predicted right, remaining
    # with every forget-group sample wrong, val all wrong
    yf, af, pf = _cells([(3, 0, 3, 3, 1), (1, 2, 2, 2, 0)])
    yr, ar, pr = _cells([(3, 0, 2, 0, 1), (1, 2, 2, 0, 0), (0, 1, 4, 4, 0), (4, 3, 3, 3, 0)])
    yv, av, pv = _cells([(3, 2, 3, 0, 0), (2, 1, 3, 0, 0)])
    parts = [(yf, af, pf), (yr, ar, pr), (yv, av, pv), (yt, at, pt)]
    y = np.concatenate([p[0] for p in parts])
    a = np.concatenate([p[1] for p in parts])
    pred = np.concatenate([p[2] for p in parts])
    bounds = np.cumsum([0] + [len(p[0]) for p in parts])
    sets = {k: np.arange(bounds[i], bounds[i + 1]) for i, k in enumerate(("forget", "remaining", "val", "test"))}
    loss = np.linspace(0.1, 2.0, len(y))
    m = M.split_metrics(pred, loss, y, a, a + 4 * y, sets, GROUPS5, 5 * 4, "single")

    # independent computation, sample by sample, on the test split
    ga_hits = [int(p == t) for p, t, s in zip(pt, yt, at) if t in T5 and s in S5]
    ga = 100.0 * sum(ga_hits) / len(ga_hits)
    acc = {(i, j): _cell_accuracy(pt, yt, at, i, j) for i in (False, True) for j in (False, True)}
    eo = 0.5 * (abs(acc[(False, False)] - acc[(False, True)]) + abs(acc[(True, False)] - acc[(True, True)]))
    # ... and by hand from the table above
    assert ga == 50.0
    assert acc == pytest.approx({(True, True): 50.0, (True, False): 400 / 6, (False, True): 75.0, (False, False): 37.5})
    assert eo == pytest.approx(0.5 * (37.5 + 50 / 3))
    assert m["GA"] == pytest.approx(ga)
    assert m["EO"] == pytest.approx(eo)
    assert m["TA"] == pytest.approx(100 * 21 / 38)


# ------------------------------------------------------------------ influence with REWEIGHT


def _per_sample_grads(model, x, y) -> np.ndarray:
    """Per-sample gradient of CE for a linear softmax model, by formula (no autograd):
    d/dW = (p - e_y) x^T, d/db = p - e_y; flattened as ``model.parameters()`` (W then b)."""
    W = model.weight.detach().double().numpy()
    b = model.bias.detach().double().numpy()
    X = x.double().numpy()
    z = X @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = p - np.eye(W.shape[0])[y]
    return np.concatenate([(r[:, :, None] * X[:, None, :]).reshape(len(y), -1), r], axis=1)


def _influence_fixture():
    # 2 classes x 2 attrs; train group counts 6, 4, 5, 3; forget: 3 of group 2 (y=1, a=0)
    g_train = [0] * 6 + [1] * 4 + [2] * 5 + [3] * 3
    y = [g // 2 for g in g_train] + [0, 1]
    a = [g % 2 for g in g_train] + [1, 0]
    split = ["train"] * len(g_train) + ["val", "val"]
    prep = synthetic_prep(y, a, split, 2, 2, seed=3, dim=3)
    train = np.arange(len(g_train))
    forget = np.array([10, 12, 13])  # three of group 2 (indices 10..14)
    remaining = np.setdiff1d(train, forget)
    return prep, forget, remaining


@pytest.mark.parametrize("reweight", [False, True])
def test_influence_reweight_scales_the_remaining_gradient_by_value(reweight):
    """v = g_f - g_r with g_f = sum_forget grad / (n_f + n_r) and g_r = sum_i w_i grad_i *
    n_f / ((n_f + n_r) n_r), w = 1 without REWEIGHT and w = alpha_g normalised to sum n_r
    with it (the REWEIGHT sampler's expected epoch: n_r draws with probability alpha_i /
    sum alpha); the step is alpha * F^-1 v with F = I + (1/n) sum_j g_j g_j^T over the first
    n + 2 remaining samples (woodbury). Guards: weights not normalised (sum alpha = N_train),
    ignored, normalised to 1, or applied to the wrong samples."""
    prep, forget, remaining = _influence_fixture()
    model = linear(3, 2, seed=1)
    spec = get_method("influence")
    ctx = UnlearnContext(
        model=copy.deepcopy(model),
        prep=prep,
        forget_idx=forget,
        remaining_idx=remaining,
        cfg={"batch_size": 4},  # several batches: each batch's slice of the weights matters
        options={**spec.options, "alpha": 3.0, "fisher": "woodbury", "fisher_samples": 2},
        reweight=reweight,
        seed=0,
    )
    out = spec.run(ctx)

    x, yy = prep.inputs, prep.y
    n_f, n_r = len(forget), len(remaining)
    grads_f = _per_sample_grads(model, x[forget], yy[forget])
    grads_r = _per_sample_grads(model, x[remaining], yy[remaining])
    if reweight:
        # alpha_g = n_train[g] / n_remaining[g]: 6/6, 4/4, 5/2, 3/3; sum over remaining = 18
        alpha = {0: 1.0, 1: 1.0, 2: 2.5, 3: 1.0}
        w = np.array([alpha[g] for g in prep.g[remaining]])
        assert w.sum() == 18.0
        w = w * n_r / w.sum()
    else:
        w = np.ones(n_r)
    g_f = grads_f.sum(0) / (n_f + n_r)
    g_r = (w[:, None] * grads_r).sum(0) * n_f / ((n_f + n_r) * n_r)
    v = g_f - g_r
    G = grads_r[:4]  # fisher_samples + 2 = 4 first remaining samples
    fisher = np.eye(len(v)) + G.T @ G / 2
    want = 3.0 * np.linalg.solve(fisher, v)
    got = (flat(out) - flat(model)).numpy()
    assert np.allclose(got, want, rtol=1e-4, atol=1e-6), (got, want)


# ------------------------------------------------------------------ Sharp MinMax: the forget step


def _minmax_fixture():
    y = [0, 1, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 1, 1, 1, 0, 2]
    a = [0, 1] * 9
    split = ["train"] * 16 + ["val", "val"]
    prep = synthetic_prep(y, a, split, 3, 2, seed=5, dim=4)
    forget = np.array([1, 3, 6, 12, 13])
    remaining = np.setdiff1d(np.arange(16), forget)
    return prep, forget, remaining


def _ce(theta, x, y, n_classes=3):
    d = x.shape[1]
    W, b = theta[: n_classes * d].view(n_classes, d), theta[n_classes * d :]
    return F.cross_entropy(x.double() @ W.T + b, torch.as_tensor(y))


def _grad(fn, theta):
    t = theta.clone().requires_grad_(True)
    return torch.autograd.grad(fn(t), t)[0]


def _sam(fn, theta, rho, lamb, sigma):
    """The SAM gradient of ``fn`` at ``theta`` (sharp-unlearn fact sheet §1): eps = rho g / |g|,
    grad = g + sigma * lamb * (g_adv - g); sigma = +1 for min, -1 for max."""
    g = _grad(fn, theta)
    g_adv = _grad(fn, theta + rho * g / (g.norm() + 1e-12))
    return g + sigma * lamb * (g_adv - g)


@pytest.mark.parametrize("sam", [False, True])
def test_sharp_minmax_forget_step_is_ascent_by_value(sam):
    """One pair of updates with SGD (no momentum, no weight decay), on a linear model:

    * mask m: the top half of |grad CE_f| of the original model (largest first);
    * remaining step: theta_1 = theta_0 - lr * grad(alpha CE_r) * (1 - m);
    * forget step: theta_2 = theta_1 - lr * grad(-(1 - alpha) CE_f) * m, i.e. without SAM
      theta_1 + lr (1 - alpha) grad CE_f * m: gradient ascent, the forget loss goes up.

    With SAM (the method's defaults, remaining SAM-min and forget SAM-max, lamb 0.5) each
    gradient is the SAM combination of its own loss. Guards: the forget loss's sign flipped
    (descent), alpha instead of 1 - alpha, the two SAM modes swapped."""
    prep, forget, remaining = _minmax_fixture()
    model = linear(4, 3, seed=2)
    alpha, lr, rho, lamb = 0.7, 0.5, 0.3, 0.5
    cfg = {
        "epochs": 1,
        "batch_size": 64,  # one remaining batch, one forget batch
        "lr": lr,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "warmup_epochs": 0,
        "schedule": "const",
        "augment": False,
        "optimizer": "sgd",
        "sam": {"mode": "none", "rho": rho, "lamb": lamb, "adaptive": False},
    }
    spec = get_method("sharp_minmax")
    opts = {**spec.options, "alpha": alpha, "threshold": 0.5}
    if not sam:
        opts.update(retain_sam="none", forget_sam="none")
    ctx = UnlearnContext(copy.deepcopy(model), prep, forget, remaining, cfg, opts, reweight=False, seed=0)
    out = spec.run(ctx)

    x = prep.inputs
    xf, yf, xr, yr = x[forget], prep.y[forget], x[remaining], prep.y[remaining]
    theta0 = flat(model)
    g_mask = _grad(lambda t: _ce(t, xf, yf), theta0).abs()
    k = int(0.5 * len(theta0))
    order = torch.argsort(g_mask, descending=True, stable=True)
    assert g_mask[order[k - 1]] - g_mask[order[k]] > 1e-4  # the mask is not decided by rounding
    m = torch.zeros_like(theta0)
    m[order[:k]] = 1.0

    def retain_loss(t):
        return alpha * _ce(t, xr, yr)

    def forget_loss(t):
        return -(1 - alpha) * _ce(t, xf, yf)

    if sam:
        g_r = _sam(retain_loss, theta0, rho, lamb, +1.0)
    else:
        g_r = _grad(retain_loss, theta0)
    theta1 = theta0 - lr * g_r * (1 - m)
    if sam:
        g_f = _sam(forget_loss, theta1, rho, lamb, -1.0)
    else:
        g_f = _grad(forget_loss, theta1)
        # the update of the masked weights is +lr (1 - alpha) grad CE_f: ascent
        assert torch.allclose(-lr * g_f, lr * (1 - alpha) * _grad(lambda t: _ce(t, xf, yf), theta1))
    theta2 = theta1 - lr * g_f * m
    got = flat(out)
    assert torch.allclose(got, theta2, atol=2e-6), (got - theta2).abs().max()
    # the forget step raised the forget loss
    assert float(_ce(got, xf, yf)) > float(_ce(theta1, xf, yf)) + 1e-3


# ------------------------------------------------------------------ ToW / ToW-MIA on both sides


def test_tow_and_tow_mia_use_absolute_differences_on_both_sides_of_the_reference():
    """ToW = 100 prod_{RA,UA,TA} (1 - |Δ|/100), ToW-MIA = 100 prod_{MIA_SVC,RA,TA} (1 - |Δ|/100),
    with the model above its reference on some keys and below on others. Guards: a dropped
    abs() (either sign convention, incl. main_forget.py's signed ToW, fact sheet S6), a
    wrong key."""
    from grmu.metrics import tow, tow_mia

    ref = {"RA": 95.0, "UA": 20.0, "TA": 82.0, "MIA_SVC": 40.0, "MIA": 10.0, "EO": 5.0, "GA": 60.0}
    # RA above by 2, UA below by 5, TA below by 2, MIA_SVC above by 5; the unused keys far off
    model = {"RA": 97.0, "UA": 15.0, "TA": 80.0, "MIA_SVC": 45.0, "MIA": 90.0, "EO": 55.0, "GA": 0.0}
    assert tow(model, ref) == pytest.approx(100 * 0.98 * 0.95 * 0.98)
    assert tow_mia(model, ref) == pytest.approx(100 * 0.95 * 0.98 * 0.98)
    # the same numbers with the roles swapped
    assert tow(ref, model) == pytest.approx(100 * 0.98 * 0.95 * 0.98)
    assert tow_mia(ref, model) == pytest.approx(100 * 0.95 * 0.98 * 0.98)


# ------------------------------------------------------------------ aggregate stage, eval.reference

AGG_KEYS = ("RA", "UA", "TA", "MIA", "EO", "GA")
# value of each model in each seed (every key gets value + its offset below); the references
# differ so that each choice gives its own numbers
AGG_VALUES = {
    0: {"pretrain": 45.0, "retrain_erm": 40.0, "retrain_reweight": 50.0, "retrain_gdro": 70.0, "unlearned": 60.0},
    1: {"pretrain": 45.0, "retrain_erm": 44.0, "retrain_reweight": 52.0, "retrain_gdro": 63.0, "unlearned": 57.0},
}
AGG_OFFSETS = dict(zip(AGG_KEYS, (30.0, -20.0, 25.0, -30.0, -25.0, 5.0)))


def _write_evals(root: Path):
    for seed, models in AGG_VALUES.items():
        for model, v in models.items():
            m = {k: v + AGG_OFFSETS[k] for k in AGG_KEYS}
            m.update({"WG": v, "DP": 1.0, "EP": 2.0, "MIA_AUC": 50.0, "MIA_SVC": v / 2, "VA": v})
            m["group_acc"] = [v, v - 1, v - 2, v - 3]
            d = {"metrics": m, "run": {"grmu": "0.1.0", "device": "cpu"}}
            if model == "unlearned":
                d["trained"] = {"unlearn": {"sam": None}, "run": {"grmu": "0.1.0"}}
            path = root / model / f"0.5-{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(d))


@pytest.mark.parametrize("reference", ["retrain_gdro", "retrain_erm"])
def test_aggregate_stage_measures_gaps_against_the_chosen_reference(tmp_path, reference):
    """The stage's outputs (summary.json, per_seed.csv, table.csv, table.md) measure every Δ,
    avg. gap, ToW and ToW-MIA against ``eval.reference`` of the same seed. Guards: the
    param not passed on (the default RETRAIN+REWEIGHT used), passed to one output only."""
    from grmu.stages import aggregate
    from tests.conftest import small_params

    evals, logs = tmp_path / "eval", tmp_path / "logs"
    _write_evals(evals)
    logs.mkdir()
    params = small_params(ratios=[0.5], seeds=[0, 1], method="scrub", reweight=True, eval={"reference": reference})
    meta = {
        "dataset": "colored_mnist",
        "classes": ["c0", "c1"],
        "attrs": ["a0", "a1"],
        "n_classes": 2,
        "n_attrs": 2,
        "default_forget_groups": [[1, 0]],
    }
    aggregate.run(params, evals, logs, meta, tmp_path / "metrics", tmp_path / "plots")

    # expected, by hand: |Δ| is the same on every key (same offsets), per seed
    d = {s: abs(AGG_VALUES[s]["unlearned"] - AGG_VALUES[s][reference]) for s in (0, 1)}
    d_mia_svc = {s: d[s] / 2 for s in (0, 1)}
    gaps = [100 - d[s] for s in (0, 1)]
    tows = [100 * (1 - d[s] / 100) ** 3 for s in (0, 1)]
    tow_mias = [100 * (1 - d_mia_svc[s] / 100) * (1 - d[s] / 100) ** 2 for s in (0, 1)]
    # gdro: d = 10, 6 -> 92 ± 2; erm: d = 20, 13 -> 83.5 ± 3.5; (reweight would be 92.5 ± 2.5)
    assert gaps == {"retrain_gdro": [90.0, 94.0], "retrain_erm": [80.0, 87.0]}[reference]

    s = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    assert s["reference"] == reference
    assert s["avg_gap"] == pytest.approx(np.mean(gaps)) and s["avg_gap_std"] == pytest.approx(np.std(gaps))
    assert s["ToW"] == pytest.approx(round(np.mean(tows), 3))
    assert s["ToW_MIA"] == pytest.approx(round(np.mean(tow_mias), 3))
    block = s["r0.5"]
    assert "avg_gap" not in block[reference] and "avg_gap" in block["retrain_reweight"]
    # RETRAIN+REWEIGHT against the chosen reference: its own gap, not 100
    rw = [100 - abs(AGG_VALUES[s_]["retrain_reweight"] - AGG_VALUES[s_][reference]) for s_ in (0, 1)]
    assert block["retrain_reweight"]["avg_gap"] == pytest.approx(np.mean(rw))

    with open(tmp_path / "metrics" / "per_seed.csv") as f:
        rows = {(r["model"], int(r["seed"])): r for r in csv.DictReader(f)}
    for seed in (0, 1):
        unl = rows[("unlearned", seed)]
        for k in AGG_KEYS:
            assert float(unl[f"d_{k}"]) == pytest.approx(d[seed])
        assert float(unl["avg_gap"]) == pytest.approx(gaps[seed])
        assert float(unl["ToW"]) == pytest.approx(tows[seed])
        assert float(unl["ToW_MIA"]) == pytest.approx(tow_mias[seed])
        assert float(rows[(reference, seed)]["avg_gap"]) == 100.0

    with open(tmp_path / "metrics" / "table.csv") as f:
        table = {r["model"]: r for r in csv.DictReader(f)}
    label = {"retrain_gdro": "RETRAIN+Group-DRO", "retrain_erm": "RETRAIN"}[reference]
    assert table[label]["avg. gap"] == "–" and table["RETRAIN+REWEIGHT"]["avg. gap"] != "–"
    assert table["SCRUB+REWEIGHT"]["avg. gap"] == f"{np.mean(gaps):.1f} ± {np.std(gaps):.1f}"
    assert table["SCRUB+REWEIGHT"]["ΔRA"] == f"{np.mean(list(d.values())):.1f}"
    assert f"against {label} of the same seed" in (tmp_path / "metrics" / "table.md").read_text()


# ------------------------------------------------------------------ data parallel: 2 gloo ranks

DDP_CFG = {"epochs": 2, "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0, "warmup_epochs": 0, "schedule": "const"}
DDP_BATCH = 7  # 17 samples: batches of 7, 7, 3, split 3 + 4 and 1 + 2 between the two ranks


def _ddp_prep():
    # 2 classes x 2 attrs, unequal groups (sizes 7, 4, 2, 4); two validation samples
    y = [0] * 11 + [1] * 6 + [0, 1]
    a = [0] * 7 + [1] * 4 + [0] * 2 + [1] * 4 + [0, 1]
    return synthetic_prep(y, a, ["train"] * 17 + ["val"] * 2, 2, 2, seed=11, dim=3)


def _ddp_train(prep, state) -> dict:
    """Both trainings, in this process (one process or one rank of a group): plain CE with
    plain batches, and Group-DRO with its group-balanced sampler (unequal weights)."""
    from grmu.robust import GroupDRO, group_balanced_weights
    from grmu.train import Pass, fit

    idx = prep.indices("train")
    out = {}
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(state)
    fit(model, prep, lambda e: [Pass("train", idx, batch_size=DDP_BATCH)], DDP_CFG, seed=4)
    out["erm"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(state)
    dro = GroupDRO(prep.n_groups, eta=2.0)
    w = group_balanced_weights(prep.g[idx], prep.n_groups)

    def loss(net, x, y, g):
        return dro(net(x), y, g)

    fit(model, prep, lambda e: [Pass("train", idx, loss, DDP_BATCH, w)], DDP_CFG, seed=4)
    out["gdro"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out["q"] = dro.q.clone()
    return out


def _ddp_worker(rank, world, init_file, prep, state, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_ddp_train(prep, state), f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_ranks_with_unequal_shards_train_as_one_process(tmp_path):
    """Two real gloo processes (torch.multiprocessing spawn, CPU) sharing every batch unevenly
    (3 + 4 and 1 + 2 samples) train a linear model to the weights of one process: each rank's
    mean loss is weighted by its share (``loss_scale``); Group-DRO's group losses, counts and
    weights q are those of the global batch. Guards: the unweighted mean of the ranks' losses,
    Group-DRO's counts or q update per rank, its share factor dropped."""
    import torch.multiprocessing as mp

    assert not torch.distributed.is_initialized()
    prep = _ddp_prep()
    state = linear(3, 2, seed=7).state_dict()
    want = _ddp_train(prep, state)
    # fork: the ranks start in a fraction of a second, without importing torch again
    args = (2, str(tmp_path / "pg"), prep, state, str(tmp_path))
    ranks = mp.start_processes(_ddp_worker, args=args, nprocs=2, join=False, start_method="fork")
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for p in ranks.processes:
                p.kill()
            pytest.fail("the two gloo ranks did not finish within 120 s")
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for kind in ("erm", "gdro"):
            for k in want[kind]:
                assert torch.allclose(got[kind][k], want[kind][k], atol=2e-6), (rank, kind, k)
        assert torch.allclose(got["q"], want["q"], atol=1e-6), (rank, got["q"], want["q"])
    # the fixture is not degenerate: the run moved the weights and q away from uniform
    assert not torch.allclose(want["erm"]["weight"], state["weight"], atol=1e-2)
    assert float(want["q"].max() - want["q"].min()) > 0.05
