"""Metrics on hand-computed cases."""

import numpy as np
import pytest

from grmu.metrics import (
    accuracy,
    avg_gap,
    demographic_parity,
    equal_opportunity,
    equalized_odds,
    forget_group_accuracy,
    group_accuracies,
    mia_efficacy,
    svc_mia_efficacy,
    tow,
    tow_mia,
    worst_group_accuracy,
)

# 8 test samples: (y, a) cells with 2 samples each
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
A = np.array([0, 0, 1, 1, 0, 0, 1, 1])
G = A + 2 * Y
P = np.array([0, 0, 0, 1, 1, 0, 1, 1])  # wrong on sample 3 (y0,a1) and 5 (y1,a0)
FORGET = [[1, 0]]


def test_accuracy_and_groups():
    assert accuracy(P, Y) == 75.0
    assert group_accuracies(P, Y, G, 4) == [100.0, 50.0, 50.0, 100.0]
    assert worst_group_accuracy(P, Y, G, 4) == 50.0


def test_ga_is_accuracy_on_forget_group_cells():
    assert forget_group_accuracy(P, Y, A, FORGET) == 50.0
    assert forget_group_accuracy(P, Y, A, [[1, 0], [1, 1]]) == 75.0


def test_equalized_odds_hand_computed():
    # binarised with T={1}, S={0}: acc[y=0]: a in S -> 100, not -> 50; acc[y=1]: a in S -> 50, not -> 100
    assert equalized_odds(P, Y, A, FORGET) == pytest.approx(0.5 * (50 + 50))
    perfect = Y.copy()
    assert equalized_odds(perfect, Y, A, FORGET) == 0.0


def test_dp_and_ep_hand_computed():
    # P(Ŷ=1 | a=0) = 1/4 (sample 4), P(Ŷ=1 | a=1) = 3/4 (samples 3, 6, 7)
    assert demographic_parity(P, Y, A, FORGET) == pytest.approx(50.0)
    # among y=1: P(Ŷ=1 | a=0) = 1/2, P(Ŷ=1 | a=1) = 1
    assert equal_opportunity(P, Y, A, FORGET) == pytest.approx(50.0)


def test_avg_gap_and_tow_follow_the_paper():
    ref = dict(RA=96.3, UA=39.7, TA=95.8, MIA=2.2, EO=23.9, GA=41.3)
    miu = dict(RA=96.3 + 0.3, UA=39.7 + 3.5, TA=95.8 + 0.2, MIA=2.2 - 1.3, EO=23.9 + 0.5, GA=41.3 + 0.4)
    assert avg_gap(miu, ref) == pytest.approx(100 - (0.3 + 3.5 + 0.2 + 1.3 + 0.5 + 0.4) / 6)  # 98.97 (paper: 99.0)
    assert tow(miu, ref) == pytest.approx(100 * (1 - 0.003) * (1 - 0.035) * (1 - 0.002))
    assert avg_gap(ref, ref) == 100.0


def test_mia_efficacy_detects_forgotten_vs_memorised_samples():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.0, 0.1, 400)  # low training loss
    non_members = rng.uniform(1.0, 2.0, 200)
    test = rng.uniform(1.0, 2.0, 100)
    forgotten = mia_efficacy(members, non_members, rng.uniform(1.0, 2.0, 50), test)
    memorised = mia_efficacy(members, non_members, rng.uniform(0.0, 0.1, 50), test)
    assert forgotten["MIA"] > 95 and memorised["MIA"] < 5
    assert memorised["MIA_AUC"] > 95
    single = mia_efficacy(members, non_members, rng.uniform(1.0, 2.0, 50), test, mode="single")
    assert single["MIA_config"] == "100-gini"


@pytest.mark.parametrize("seed", [1, 6, 9])
def test_mia_answers_are_those_of_a_fresh_forest_of_each_size(seed):
    """The grid's smaller forests are read off one forest of 100 trees per criterion: MIA, its
    AUC and config must be those of fresh fits of each size, the first of the best in grid order.
    Fixtures: seed 1, every config ties on MIA and 20-gini's AUC is the lowest; seed 6, 50-gini and
    100-gini tie with different AUCs; seed 9, 20-gini alone is best."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    from grmu.metrics import MIA_GRID

    rng = np.random.default_rng(seed)
    lr, lv, lf, lt = (rng.exponential(s, n) for s, n in ((0.5, 120), (0.7, 60), (0.6, 25), (0.7, 40)))
    X, lab = np.r_[lr, lv].reshape(-1, 1), np.r_[np.ones(len(lr)), np.zeros(len(lv))]
    best = None
    for n, crit in MIA_GRID:
        rf = RandomForestClassifier(n_estimators=n, criterion=crit, random_state=0).fit(X, lab)
        eff = float((rf.predict(lf.reshape(-1, 1)) == 0).mean() * 100)
        if best is None or eff > best["MIA"]:
            p = rf.predict_proba(np.r_[lf, lt].reshape(-1, 1))[:, 1]
            auc = float(roc_auc_score(np.r_[np.ones(len(lf)), np.zeros(len(lt))], p) * 100)
            best = {"MIA": eff, "MIA_AUC": auc, "MIA_config": f"{n}-{crit}"}
    assert mia_efficacy(lr, lv, lf, lt) == best
    assert best["MIA_config"] == {1: "20-gini", 6: "50-gini", 9: "20-gini"}[seed]


# --- asymmetric fixtures: every cell (y, a) has its own accuracy, so a swapped axis, a dropped
# abs(), a forgotten cell or group, or a wrong split changes the number -----------------------


def cells(correct: dict, n: int = 4, n_classes: int = 2):
    """Samples of cells (y, a), ``n`` each, of which ``correct[(y, a)]`` are predicted right
    (the others get the next class)."""
    y, a, p = [], [], []
    for (yy, aa), k in correct.items():
        y += [yy] * n
        a += [aa] * n
        p += [yy] * k + [(yy + 1) % n_classes] * (n - k)
    return np.array(y), np.array(a), np.array(p)


# cell accuracies: (0,0) 100, (0,1) 75, (1,0) 50, (1,1) 0
Y2, A2, P2 = cells({(0, 0): 4, (0, 1): 3, (1, 0): 2, (1, 1): 0})


def test_eo_uses_both_targets_and_the_right_axes():
    # T={1}, S={0}: y=0: |acc(a=1) - acc(a=0)| = |75 - 100| = 25; y=1: |0 - 50| = 50
    assert equalized_odds(P2, Y2, A2, [[1, 0]]) == pytest.approx(37.5)


def test_dp_and_ep_are_absolute_differences():
    # Ŷ=1 (pred 1): a=1 (not in S): 1 of 8; a=0 (in S): 2 of 8 -> |1/8 - 2/8|
    assert demographic_parity(P2, Y2, A2, [[1, 0]]) == pytest.approx(12.5)
    # among y=1: a=1: 0 of 4 predicted 1, a=0: 2 of 4
    assert equal_opportunity(P2, Y2, A2, [[1, 0]]) == pytest.approx(50.0)


def test_group_metrics_on_the_asymmetric_cells():
    g = A2 + 2 * Y2
    assert group_accuracies(P2, Y2, g, 4) == [100.0, 75.0, 50.0, 0.0]
    assert worst_group_accuracy(P2, Y2, g, 4) == 0.0
    assert forget_group_accuracy(P2, Y2, A2, [[1, 0]]) == 50.0
    assert forget_group_accuracy(P2, Y2, A2, [[1, 0], [1, 1]]) == 25.0  # both groups count
    assert np.isnan(accuracy(P2[:0], Y2[:0]))


# three sensitive values: (0,0) 100, (0,1) 75, (0,2) 25, (1,0) 50, (1,1) 0, (1,2) 100
Y3, A3, P3 = cells({(0, 0): 4, (0, 1): 3, (0, 2): 1, (1, 0): 2, (1, 1): 0, (1, 2): 4})


def test_several_forget_groups_all_enter_eo_dp_ep_and_ga():
    groups = [[1, 0], [1, 2]]  # T={1}, S={0, 2}
    # y=0: |acc(a=1)=75 - acc(a in {0,2})=62.5| = 12.5; y=1: |0 - 75| = 75
    assert equalized_odds(P3, Y3, A3, groups) == pytest.approx(43.75)
    assert forget_group_accuracy(P3, Y3, A3, groups) == pytest.approx(75.0)
    # Ŷ=1: a=1: 1 of 8 (the wrong y=0 one); a in S: 3 (wrong y=0 in a=2) + 2 + 4 = 9 of 16
    assert demographic_parity(P3, Y3, A3, groups) == pytest.approx(abs(1 / 8 - 9 / 16) * 100)
    # y=1: a=1: 0 of 4; a in S: 6 of 8
    assert equal_opportunity(P3, Y3, A3, groups) == pytest.approx(75.0)
    # only the first group would give other numbers
    assert equalized_odds(P3, Y3, A3, groups[:1]) != pytest.approx(43.75)


def test_multi_class_eo_uses_multi_class_correctness():
    # 3 classes, T={2}, S={1}: a wrong class-0 prediction (predicted 1) counts as wrong in its cell
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    a = np.array([0, 1, 0, 1, 0, 0, 1, 1])
    p = np.array([1, 0, 1, 1, 2, 0, 2, 2])
    # not in T: a=0 (not S): 1 of 2 right; a=1 (S): 2 of 2 -> 50; in T: a=0: 1 of 2, a=1: 2 of 2 -> 50
    assert equalized_odds(p, y, a, [[2, 1]]) == pytest.approx(50.0)


def test_split_metrics_reads_each_set_where_the_paper_does():
    """RA on remaining, UA on forget, TA/GA/EO on test, MIA members = remaining and
    non-members = val, VA on val: each set is built to give its own number."""
    from grmu.metrics import split_metrics

    # test: the asymmetric cells (TA 56.25, GA 50 for group (1, 0), WG 0)
    yt, at, pt = Y2, A2, P2
    # train: forget = 3 samples of (1, 0), one right; remaining = 7 samples, all right, two of them (1, 0)
    yf, af, pf = np.ones(3, int), np.zeros(3, int), np.array([0, 1, 0])
    yr, ar = np.array([0, 0, 0, 1, 1, 1, 1]), np.array([0, 1, 0, 0, 0, 1, 1])
    pr = yr.copy()
    # val: 4 samples, 1 right
    yv, av, pv = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0])
    y = np.concatenate([yf, yr, yv, yt])
    a = np.concatenate([af, ar, av, at])
    pred = np.concatenate([pf, pr, pv, pt])
    n_f, n_r, n_v = len(yf), len(yr), len(yv)
    sets = {
        "remaining": np.arange(n_f, n_f + n_r),
        "forget": np.arange(n_f),
        "val": np.arange(n_f + n_r, n_f + n_r + n_v),
        "test": np.arange(n_f + n_r + n_v, len(y)),
    }
    rng = np.random.default_rng(0)
    loss = np.empty(len(y))
    loss[sets["remaining"]] = rng.uniform(0.0, 0.05, n_r)  # members: low loss
    loss[sets["val"]] = rng.uniform(2.0, 3.0, n_v)  # non-members: high loss
    loss[sets["forget"]] = 0.4  # between: looks like a member to an attacker trained on val
    loss[sets["test"]] = 0.4  # ... but a non-member to one trained on test
    m = split_metrics(pred, loss, y, a, a + 2 * y, sets, [[1, 0]], 4, "single")
    assert m["RA"] == 100.0 and m["UA"] == pytest.approx(100 / 3)
    assert m["TA"] == pytest.approx(56.25) and m["VA"] == 25.0
    assert m["GA"] == 50.0 and m["EO"] == pytest.approx(37.5) and m["WG"] == 0.0
    assert m["DP"] == pytest.approx(12.5) and m["EP"] == pytest.approx(50.0)
    assert m["group_acc"] == [100.0, 75.0, 50.0, 0.0]
    assert m["MIA"] == 0.0  # the forget losses look like members' (non-members from val)


def test_tow_mia_uses_mia_svc_ra_and_ta_only():
    model = {"RA": 90.0, "UA": 10.0, "TA": 80.0, "MIA_SVC": 30.0, "MIA": 0.0}
    ref = {"RA": 95.0, "UA": 90.0, "TA": 82.0, "MIA_SVC": 40.0, "MIA": 100.0}
    assert tow_mia(model, ref) == pytest.approx(100 * 0.90 * 0.95 * 0.98)
    assert tow_mia(ref, model) == tow_mia(model, ref)  # absolute differences


def test_svc_mia_members_are_the_first_test_sized_remaining_samples():
    test = np.full(50, 0.3)
    remaining = np.concatenate([np.full(50, 1.0), np.full(200, 0.3)])
    # members 1.0 vs non-members 0.3: a forget set at 0.3 looks non-member, one at 1.0 member
    assert svc_mia_efficacy(remaining, test, np.full(20, 0.3)) == 100.0
    assert svc_mia_efficacy(remaining, test, np.full(20, 1.0)) == 0.0
    mixed = np.concatenate([np.full(5, 0.3), np.full(15, 1.0)])
    assert svc_mia_efficacy(remaining, test, mixed) == 25.0


def test_split_metrics_gives_mia_svc_the_true_class_confidence_of_each_set(monkeypatch):
    import grmu.metrics as M

    seen = {}
    monkeypatch.setattr(M, "svc_mia_efficacy", lambda r, t, f: seen.update(r=r, t=t, f=f) or 12.5)
    n = 40
    y = np.arange(n) % 2
    loss = np.linspace(0.05, 2.0, n, dtype=np.float32)  # as grmu.inference.predictions returns them
    sets = {
        "remaining": np.arange(0, 20),
        "forget": np.arange(20, 25),
        "val": np.arange(25, 30),
        "test": np.arange(30, 40),
    }
    m = M.split_metrics(y.copy(), loss, y, y, y, sets, [[1, 1]], 4, "single")
    assert m["MIA_SVC"] == 12.5
    assert seen["r"].dtype == seen["t"].dtype == seen["f"].dtype == np.float64  # p_y in double precision
    assert np.allclose(seen["r"], np.exp(-loss[:20])) and np.allclose(seen["t"], np.exp(-loss[30:]))
    assert np.allclose(seen["f"], np.exp(-loss[20:25]))
