"""Metrics on hand-computed cases."""
import numpy as np
import pytest

from grmu.metrics import (accuracy, avg_gap, demographic_parity, equal_opportunity, equalized_odds,
                          forget_group_accuracy, group_accuracies, mia_efficacy, tow, worst_group_accuracy)

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
