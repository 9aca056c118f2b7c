"""The forgetting audit's formulas (src/grmu/audit.py) against hand computations on small,
asymmetric arrays; see docs/audit.md for the definitions."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from grmu import GrmuError
from grmu.audit import (
    attack_metrics,
    attack_metrics_by_group,
    by_group,
    competition_score,
    epsilon_scores,
    example_epsilon,
    forgetting_quality,
    leave_one_out,
    logit_confidence,
    population_scores,
    ulira_scores,
)

AUDIT = Path(__file__).resolve().parents[1] / "src" / "grmu" / "audit.py"
DELTA = 1e-5


def one_line_error(call, *needles):
    """``call`` raises a GrmuError of one line that contains every needle."""
    with pytest.raises(GrmuError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# --------------------------------------------------------------------------- logit_confidence


def test_logit_confidence_hand_computed():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 3.0, -2.0]])
    phi = logit_confidence(logits, np.array([0, 2]))
    # φ = z_y − log Σ_{k≠y} e^{z_k}
    assert phi[0] == pytest.approx(2 - math.log(1 + math.exp(-1)), abs=1e-12)
    assert phi[1] == pytest.approx(-2 - math.log(math.exp(0.5) + math.exp(3.0)), abs=1e-12)
    # the definition log(p / (1 − p)) with p the softmax probability of the label
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p_y = p[[0, 1], [0, 2]]
    np.testing.assert_allclose(phi, np.log(p_y / (1 - p_y)), atol=1e-12)


def test_logit_confidence_is_exact_where_softmax_saturates():
    logits = np.array([[1000.0, 0.0], [1000.0, 0.0]])
    np.testing.assert_array_equal(logit_confidence(logits, np.array([0, 1])), [1000.0, -1000.0])
    # the competition code's floor of 1e-45 on p_y and 1 − p_y bounds φ at 45 ln 10
    floored = logit_confidence(logits[:1], np.array([0]), floor=1e-45)
    assert floored[0] == pytest.approx(45 * math.log(10), abs=1e-9)
    moderate = np.array([[2.0, 0.0, -1.0]])
    assert logit_confidence(moderate, np.array([0]), floor=1e-45)[0] == pytest.approx(2 - math.log(1 + math.exp(-1)))


def test_logit_confidence_of_an_ensemble_is_each_models():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (4, 5, 3))  # (models, n, classes)
    y = np.array([2, 0, 1, 1, 0])
    stacked = logit_confidence(logits, y)
    assert stacked.shape == (4, 5)
    for m in range(4):
        np.testing.assert_array_equal(stacked[m], logit_confidence(logits[m], y))


# --------------------------------------------------------------------------- U-LiRA

# two examples; three shadow models per side
PHI_IN = np.array([[1.0, 0.0], [2.0, 4.0], [3.0, 5.0]])  # means 2, 3; variances 2/3, 14/3
PHI_OUT = np.array([[0.0, -1.0], [0.0, 1.0], [3.0, 0.0]])  # means 1, 0; variances 2, 2/3
TARGET = np.array([2.5, 1.0])


def test_ulira_scores_per_example_gaussians_hand_computed():
    scores = ulira_scores(TARGET, PHI_IN, PHI_OUT)
    # example 0: −½ln(2/3) − 0.5²/(2·2/3) + ½ln 2 + 1.5²/(2·2)
    # example 1: −½ln(14/3) − 2²/(2·14/3) + ½ln(2/3) + 1²/(2·2/3)
    np.testing.assert_allclose(scores, [0.5 * math.log(3) + 0.375, -0.5 * math.log(7) + 9 / 28], atol=1e-12)
    unbiased = ulira_scores(TARGET[:1], PHI_IN[:, :1], PHI_OUT[:, :1], ddof=1)  # variances 1 and 3
    assert unbiased[0] == pytest.approx(0.5 * math.log(3) + 0.25, abs=1e-12)


def test_ulira_scores_median_center_as_lira_code():
    scores = ulira_scores(TARGET, PHI_IN, PHI_OUT, center="median")
    # medians: in 2, 4; out 0, 0; the variances stay around the means (2/3, 14/3; 2, 2/3)
    # example 0: −½ln(2/3) − 0.5²/(2·2/3) + ½ln 2 + 2.5²/(2·2)
    # example 1: −½ln(14/3) − 3²/(2·14/3) + ½ln(2/3) + 1²/(2·2/3)
    np.testing.assert_allclose(scores, [0.5 * math.log(3) + 1.375, -0.5 * math.log(7) - 3 / 14], atol=1e-12)


def test_ulira_scores_global_variance_pools_within_example_deviations():
    scores = ulira_scores(TARGET, PHI_IN, PHI_OUT, variance="global")
    # σ²_in = (2 + 14)/6 = 8/3, σ²_out = (6 + 2)/6 = 4/3, each example keeps its own mean
    np.testing.assert_allclose(scores, [-0.5 * math.log(2) + 51 / 64, -0.5 * math.log(2) - 3 / 8], atol=1e-12)


def test_ulira_scores_nan_marks_a_model_that_is_not_on_that_side():
    with_absent = np.vstack([PHI_IN, [np.nan, np.nan]])
    np.testing.assert_array_equal(ulira_scores(TARGET, with_absent, PHI_OUT), ulira_scores(TARGET, PHI_IN, PHI_OUT))
    short = PHI_IN.copy()
    short[1:, 1] = np.nan  # example 1 keeps one "in" model
    one_line_error(lambda: ulira_scores(TARGET, short, PHI_OUT), "example 1", "1 'in'")


def test_ulira_catches_members_that_a_global_threshold_misses():
    """Each example has its own scale (difficulty): one threshold for all examples is near chance,
    a Gaussian per example is near perfect."""
    rng = np.random.default_rng(0)
    n, n_shadow = 400, 16
    base = rng.normal(0, 10, n)
    phi_out = base + rng.normal(0, 0.5, (n_shadow, n))
    phi_in = base + 2 + rng.normal(0, 0.5, (n_shadow, n))
    member = np.arange(n) < n // 2  # a balanced set of targets
    target = base + 2 * member + rng.normal(0, 0.5, n)

    loss = np.logaddexp(0, -target)  # the cross-entropy −log p_y of φ
    population = attack_metrics(-loss, member)
    ulira = attack_metrics(ulira_scores(target, phi_in, phi_out), member)
    assert population["AUC"] < 0.65 and population["TPR@FPR=0.01"] < 0.1
    assert ulira["AUC"] > 0.97 and ulira["accuracy"] > 0.9 and ulira["TPR@FPR=0.01"] > 0.5


# --------------------------------------------------------------------------- the audit's game

U3 = np.array([[1.0, 5.0], [2.0, 7.0], [4.0, 6.0]])  # 3 unlearned models x 2 forget examples
R3 = np.array([[0.0, 1.0], [1.0, 3.0], [-1.0, 2.0]])  # 3 retrained models


def _logpdf(x, mu, var):
    return -0.5 * math.log(2 * math.pi * var) - (x - mu) ** 2 / (2 * var)


def test_leave_one_out_targets_each_pair_with_the_others_as_shadows_hand_computed():
    scores, member = leave_one_out(U3, R3)
    assert scores.shape == member.shape == (6, 2)
    assert member[:3].all() and not member[3:].any()
    # fold 0, example 0: in = unlearned models 1, 2 (2, 4: mean 3, var 1); out = retrained 1, 2 (1, -1: mean 0, var 1)
    assert scores[0, 0] == pytest.approx(_logpdf(1.0, 3, 1) - _logpdf(1.0, 0, 1))  # the unlearned target, φ 1
    assert scores[3, 0] == pytest.approx(_logpdf(0.0, 3, 1) - _logpdf(0.0, 0, 1))  # the retrained target, φ 0
    # fold 2, example 1: in = 5, 7 (mean 6, var 1); out = 1, 3 (mean 2, var 1)
    assert scores[2, 1] == pytest.approx(_logpdf(6.0, 6, 1) - _logpdf(6.0, 2, 1))
    assert scores[5, 1] == pytest.approx(_logpdf(2.0, 6, 1) - _logpdf(2.0, 2, 1))


def test_population_scores_pool_every_example_hand_computed():
    pop, _ = leave_one_out(U3, R3, population_scores)
    # fold 0: in = 2, 7, 4, 6 (mean 4.75, var 3.6875); out = 1, 3, -1, 2 (mean 1.25, var 2.1875)
    for row, x in ((0, 1.0), (3, 0.0)):
        assert pop[row, 0] == pytest.approx(_logpdf(x, 4.75, 3.6875) - _logpdf(x, 1.25, 2.1875))
    one_line_error(lambda: population_scores(np.ones(2), np.ones((2, 2)), R3[:2]), "phi_in has zero variance")


def test_leave_one_out_needs_three_models_and_matching_sides():
    one_line_error(lambda: leave_one_out(U3[:2], R3[:2]), "2 models per side", "at least 3")
    one_line_error(lambda: leave_one_out(U3, R3[:, :1]), "phi_unlearned has shape (3, 2)", "(3, 1)")


def test_in_the_audits_game_ulira_sees_what_the_population_attack_misses():
    """Forget examples of very different difficulty; unlearned models keep a small per-example
    trace (+1.5 on φ): pooled over examples it drowns, per example it stands out."""
    rng = np.random.default_rng(3)
    n_models, n = 16, 300
    base = rng.normal(0, 8, n)
    retrained = base + rng.normal(0, 0.5, (n_models, n))
    unlearned = base + 1.5 + rng.normal(0, 0.5, (n_models, n))
    scores, member = leave_one_out(unlearned, retrained)
    pop, _ = leave_one_out(unlearned, retrained, population_scores)
    ulira, population = attack_metrics(scores.ravel(), member.ravel()), attack_metrics(pop.ravel(), member.ravel())
    assert ulira["AUC"] > 0.95 and ulira["TPR@FPR=0.01"] > 0.4
    assert population["AUC"] < 0.6 and population["TPR@FPR=0.01"] < 0.05


# --------------------------------------------------------------------------- attack_metrics

NON = np.arange(200.0)  # 200 non-members scored 0..199
MEM = np.array([300, 301, 302, 303, 304, 198.5, 197.5, 196.5, 0.5, 50.5])


def test_attack_metrics_hand_computed():
    scores = np.concatenate([MEM, NON])
    member = np.arange(210) < 10
    out = attack_metrics(scores, member, threshold=150)
    # pairs ranked right: 5·200 + 199 + 198 + 197 + 1 + 51 = 1646 of 2000
    assert out["AUC"] == pytest.approx(1646 / 2000, abs=1e-12)
    # FPR ≤ 1%: at most 2 non-members (198, 199) above the threshold 197.5: 7 members
    assert out["TPR@FPR=0.01"] == pytest.approx(0.7)
    # FPR ≤ 0.1% of 200 non-members: none above: the 5 members above 199
    assert out["TPR@FPR=0.001"] == pytest.approx(0.5)
    # score > 150: 8 members right, non-members 0..150 right
    assert out["accuracy"] == pytest.approx((8 + 151) / 210)
    assert (out["n_members"], out["n_nonmembers"]) == (10, 200)
    # best 1 − (FPR + FNR)/2: at the threshold 196.5, TPR 0.8 and FPR 3/200
    assert out["best_balanced_accuracy"] == pytest.approx((1 + 0.8 - 0.015) / 2)
    # LiRA's code reads FPR < level: only the non-member 199 may be above: 6 members
    assert attack_metrics(scores, member, strict_fpr=True)["TPR@FPR=0.01"] == pytest.approx(0.6)
    # a score equal to the threshold is no member: 9 members and the non-member 0 right
    assert attack_metrics(scores, member, threshold=0.5)["accuracy"] == pytest.approx((9 + 1) / 210)


def test_attack_metrics_counts_a_tie_half():
    out = attack_metrics(np.array([1.0, 1.0, 0.0]), np.array([True, False, False]))
    assert out["AUC"] == pytest.approx(0.75)
    assert out["TPR@FPR=0.01"] == 0.0  # the tie cannot be split: only (0, 0) has FPR 0
    assert out["best_balanced_accuracy"] == pytest.approx(0.75)  # at t = 1: TPR 1, FPR 1/2


# --------------------------------------------------------------------------- the competition's ε

U4 = np.array([[0.0], [1.0], [2.0], [3.0]])  # four unlearned models, one forget example
R4 = np.array([[1.5], [2.5], [3.5], [4.5]])  # four retrained models


def test_example_epsilon_hand_computed():
    """Rates are multiples of 1/4; the best attack with both FPR and FNR above 0 has
    FPR = FNR = 1/4 (threshold in (2, 2.5]); FPR = 0 attacks (FNR ≥ 1/4) are discarded."""
    eps = example_epsilon(U4, R4, DELTA)
    assert eps[0] == pytest.approx(math.log((0.75 - DELTA) / 0.25), abs=1e-12)
    assert example_epsilon(U4, R4, 0.1)[0] == pytest.approx(math.log(0.65 / 0.25), abs=1e-12)
    for rules in (("single",), ("double",)):
        assert example_epsilon(U4, R4, DELTA, rules=rules)[0] == pytest.approx(eps[0], abs=1e-12)
    # swapping the sides changes nothing (the positive class follows the medians)
    assert example_epsilon(R4, U4, DELTA)[0] == pytest.approx(eps[0], abs=1e-12)


def test_example_epsilon_caps_separable_and_point_mass_examples():
    far = example_epsilon(U4, U4 + 10, DELTA)
    assert far[0] == 50.0  # FPR = FNR = 0: ε = ∞, capped
    assert example_epsilon(U4, U4 + 10, DELTA, eps_cap=20)[0] == 20.0
    peaky = np.array([[1.0], [1.001], [1.002]])  # range 0.002 < 1% of the other side's 2
    spread = np.array([[0.0], [1.0], [2.0]])
    assert example_epsilon(peaky, spread, DELTA)[0] == 50.0
    assert example_epsilon(peaky, spread, DELTA, peaky_ratio=0.0)[0] < 50.0
    constant = np.full((3, 1), 0.7)
    assert example_epsilon(constant, constant, DELTA)[0] == 0.0
    assert example_epsilon(constant, constant + 1, DELTA)[0] == 50.0


def test_identical_distributions_give_the_best_forgetting_quality():
    rng = np.random.default_rng(1)
    outputs = rng.normal(0, 1, (8, 5))
    eps = example_epsilon(outputs, outputs.copy(), DELTA)
    np.testing.assert_array_equal(eps, np.zeros(5))
    assert forgetting_quality(eps, n_models=8) == 1.0


def test_separated_distributions_give_the_worst_forgetting_quality():
    rng = np.random.default_rng(2)
    unlearned = rng.normal(0, 1, (8, 5))
    eps = example_epsilon(unlearned, rng.normal(0, 1, (8, 5)) + 100, DELTA)
    np.testing.assert_array_equal(eps, np.full(5, 50.0))
    assert forgetting_quality(eps, n_models=8) == 0.0


# --------------------------------------------------------------------------- forgetting quality


def test_epsilon_bins_hand_computed():
    # 512 models: max ε = ceil(ln 511) = 7, bins [0, 0.5), ..., [6.5, 7): points 1 .. 2^-13
    eps = np.array([0.0, 0.49, 0.5, 1.2, 6.9, 7.0, 50.0])
    points = epsilon_scores(eps, n_models=512)
    np.testing.assert_array_equal(points, [1, 1, 0.5, 0.25, 2.0**-13, 0, 0])
    assert forgetting_quality(eps, n_models=512) == pytest.approx((2.75 + 2.0**-13) / 7, abs=1e-15)
    # 3 models: max ε = ceil(ln 2) = 1: two bins
    np.testing.assert_array_equal(epsilon_scores(np.array([0.7, 1.0, 0.2]), n_models=3), [0.5, 0, 1])
    # bins of width 1 up to 7: points 1 .. 2^-6
    np.testing.assert_array_equal(epsilon_scores(np.array([1.2, 6.5, 7.0]), 512, bin_width=1.0), [0.5, 2.0**-6, 0])
    np.testing.assert_array_equal(epsilon_scores(np.array([2.9, 3.0]), 512, max_epsilon=3), [2.0**-5, 0])


def test_two_models_leave_no_bin():
    one_line_error(lambda: forgetting_quality(np.array([0.1]), n_models=2), "n_models=2")


def test_competition_score_hand_computed():
    score = competition_score(0.5, ra=[0.9, 0.8], ta=[0.6, 0.7], ra_ref=0.9, ta_ref=[0.5])
    assert score == pytest.approx(0.5 * (0.85 / 0.9) * (0.65 / 0.5), abs=1e-12)
    one_line_error(lambda: competition_score(0.5, 0.9, 0.6, 0.0, 0.5), "ra_ref=0.0")
    one_line_error(lambda: competition_score(1.5, 0.9, 0.6, 0.9, 0.5), "F=1.5")


# --------------------------------------------------------------------------- per group


def test_by_group_means_and_counts():
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    groups = np.array([0, 0, 1, 1, 3])
    assert by_group(values, groups) == {0: {"mean": 1.5, "n": 2}, 1: {"mean": 3.5, "n": 2}, 3: {"mean": 10.0, "n": 1}}
    assert by_group(values, groups, expected=[3, 1, 0])[3] == {"mean": 10.0, "n": 1}
    # the per-group forgetting quality: the mean points of each group's examples
    points = epsilon_scores(np.array([0.0, 0.6, 1.1, 9.0, 0.2]), n_models=512)
    assert by_group(points, groups) == {0: {"mean": 0.75, "n": 2}, 1: {"mean": 0.125, "n": 2}, 3: {"mean": 1.0, "n": 1}}


def test_by_group_refuses_an_empty_or_unknown_group():
    values, groups = np.array([1.0, 2.0, 3.0]), np.array([0, 0, 3])
    one_line_error(lambda: by_group(values, groups, expected=[0, 1, 3]), "group 1", "no example")
    one_line_error(lambda: by_group(values, groups, expected=[0, 1]), "group 3", "not one of")
    one_line_error(lambda: by_group(np.array([1.0, np.nan, 3.0]), groups), "values[1]", "nan")


def test_attack_metrics_by_group():
    scores = np.array([3.0, 1.0, 2.0, 0.0, 5.0, 4.0])
    member = np.array([1, 0, 1, 0, 0, 1])
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    out = attack_metrics_by_group(scores, member, groups)
    assert (out["a"]["AUC"], out["b"]["AUC"]) == (1.0, 0.0)
    assert out["a"]["accuracy"] == pytest.approx(0.75)  # score > 0 calls the non-member at 1 a member
    one_line_error(lambda: attack_metrics_by_group(scores, [1, 0, 1, 0, 1, 1], groups), "group 'b'", "0 non-member")


# --------------------------------------------------------------------------- bad input

BAD = [
    (lambda: example_epsilon(np.zeros((1, 3)), np.ones((4, 3))), ["unlearned_outputs", "1 model(s)"]),
    (lambda: example_epsilon(np.zeros((4, 3)), np.ones((1, 3))), ["retrained_outputs", "1 model(s)"]),
    (lambda: example_epsilon(np.zeros((4, 3)), np.ones((4, 2))), ["(4, 3)", "(4, 2)"]),
    (lambda: example_epsilon(np.zeros(4), np.ones(4)), ["unlearned_outputs", "(4,)"]),
    (lambda: example_epsilon(U4, R4, 0), ["delta=0"]),
    (lambda: example_epsilon(U4, R4, 1.0), ["delta=1.0"]),
    (lambda: example_epsilon(U4, R4, -0.1), ["delta=-0.1"]),
    (lambda: example_epsilon(U4, R4, rules=("triple",)), ["triple"]),
    (lambda: example_epsilon(U4, np.array([[1.5], [np.nan], [3.5], [4.5]])), ["retrained_outputs[1, 0]", "nan"]),
    (lambda: ulira_scores(TARGET, PHI_IN[:1], PHI_OUT), ["example 0", "1 'in'"]),
    (lambda: ulira_scores(TARGET, PHI_IN, PHI_OUT[:1]), ["example 0", "1 'out'"]),
    (lambda: ulira_scores(TARGET[:1], PHI_IN, PHI_OUT), ["phi_in", "(3, 2)"]),
    (lambda: ulira_scores(TARGET, PHI_IN, PHI_OUT, variance="pooled"), ["'pooled'"]),
    (lambda: ulira_scores(TARGET, PHI_IN, PHI_OUT, center="mode"), ["'mode'"]),
    (lambda: ulira_scores(TARGET, np.ones((3, 2)), PHI_OUT), ["example 0", "zero variance"]),
    (lambda: attack_metrics(np.array([0.1, 0.2]), np.array([True, True])), ["0 non-member"]),
    (lambda: attack_metrics(np.array([0.1, 0.2]), np.array([1, 0, 1])), ["(3,)", "(2,)"]),
    (lambda: attack_metrics(np.array([0.1, np.inf]), np.array([1, 0])), ["scores[1]", "inf"]),
    (lambda: attack_metrics(np.array([0.1, 0.2]), np.array([1, 0]), fpr_levels=(1.5,)), ["1.5"]),
    (lambda: logit_confidence(np.zeros(3), np.array([0])), ["shape (3,)"]),
    (lambda: logit_confidence(np.zeros((2, 3)), np.array([0, 5])), ["label 5"]),
    (lambda: logit_confidence(np.zeros((2, 3)), np.array([0])), ["(1,)", "(2,)"]),
    (lambda: epsilon_scores(np.array([0.1, -0.5]), 512), ["-0.5"]),
    (lambda: forgetting_quality(np.array([]), 512), ["empty"]),
    # one threshold (span 0.4 at 1 per unit) at the smallest output: FPR 1, FNR 0: discarded
    (
        lambda: example_epsilon([[0.0], [0.3]], [[0.1], [0.4]], thresholds_per_unit=1, rules=("single",)),
        ["example 0", "no attack has both FPR and FNR above 0"],
    ),
]


@pytest.mark.parametrize("call,needles", BAD, ids=[f"bad{k}" for k in range(len(BAD))])
def test_bad_input_is_refused_in_one_line_naming_the_value(call, needles):
    one_line_error(call, *needles)


def test_the_audit_imports_no_torch():
    tree = ast.parse(AUDIT.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "math", "numpy", "sklearn", "grmu"}, imported
