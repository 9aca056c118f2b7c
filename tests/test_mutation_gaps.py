"""Tests written for the mutants that the fast suite let survive (tools/mutation.sh).

Each test pins a behaviour that a surviving mutant changed: an error message, a rounding, a
ddof, an output key or column that no other fast test read. Small, CPU, asymmetric numbers.
"""

import json


import numpy as np
import pytest

from grmu import GrmuError
from grmu.report.gaps import MODELS, add_gaps, collect, summary_json
from grmu.splits import multi_group_groups

KEYS = ("RA", "UA", "TA", "MIA", "EO", "GA")


def _write(root, model, ratio, seed, value, group_acc):
    m = {k: value for k in KEYS}
    m.update({"WG": value, "DP": 0.0, "EP": 0.0, "MIA_AUC": 50.0, "MIA_SVC": value / 2, "group_acc": group_acc})
    path = root / model / f"{ratio}-{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": m}))


@pytest.fixture
def thirds(tmp_path):
    """Reference 50 everywhere; the unlearned model is off by 1/3 in seed 0 and by 2 in seed 1:
    per-seed gaps 99.667 and 98, so every mean and std has more than three decimals."""
    for seed, delta in [(0, 1 / 3), (1, 2.0)]:
        for i, model in enumerate(MODELS):
            value = {"retrain_reweight": 50.0, "unlearned": 50.0 + delta}.get(model, 40.0)
            _write(tmp_path, model, 0.5, seed, value, [float(i), float(seed), 10.0 * i + seed])
    return tmp_path


def test_collect_keeps_each_models_group_accuracies(thirds):
    df = collect(thirds, [0.5], [0, 1])
    got = {(r.model, r.seed): r.group_acc for r in df.itertuples()}
    assert got[("unlearned", 1)] == [4.0, 1.0, 41.0] and got[("pretrain", 0)] == [0.0, 0.0, 0.0]


def test_tow_column_is_the_product_over_ra_ua_ta(thirds):
    df = add_gaps(collect(thirds, [0.5], [0, 1]))
    unl = df[df["model"] == "unlearned"].set_index("seed")
    assert unl.loc[1, "ToW"] == pytest.approx(100 * 0.98**3)
    assert unl.loc[0, "ToW"] == pytest.approx(100 * (1 - 1 / 300) ** 3)


def test_summary_rounds_to_three_decimals_and_uses_the_population_std(thirds):
    s = summary_json(add_gaps(collect(thirds, [0.5], [0, 1])), "scrub", True)
    assert s["method"] == "scrub" and s["reweight"] is True
    # per-seed gaps 99.6667 and 98: mean 98.8333, std (ddof 0) 0.8333 (ddof 1 would be 1.1785)
    assert s["avg_gap"] == 98.833 and s["avg_gap_std"] == 0.833
    block = s["r0.5"]["unlearned"]
    assert block["RA"] == 51.167 and block["avg_gap"] == 98.833


def test_add_gaps_without_the_reference_names_it(thirds):
    df = collect(thirds, [0.5], [0, 1], models=("pretrain", "unlearned"))
    with pytest.raises(GrmuError) as e:
        add_gaps(df)
    assert str(e.value) == "avg. gap needs RETRAIN+REWEIGHT evaluations (model 'retrain_reweight')"


def test_multi_group_accepts_one_pair_and_refuses_k_out_of_range_by_name():
    pairs = [[2, 1], [0, 3], [1, 0]]
    assert multi_group_groups(pairs, 1) == [[2, 1]]
    assert multi_group_groups(pairs, 3) == [[2, 1], [2, 3], [2, 0], [0, 1], [0, 3], [0, 0], [1, 1], [1, 3], [1, 0]]
    for k in (0, 4):
        with pytest.raises(
            GrmuError,
            match=rf"^forget.multi_group {k} needs {k} group pairs; "
            r"the dataset defines 3$",
        ):
            multi_group_groups(pairs, k)


def test_group_dro_handles_a_batch_without_the_last_group():
    """Group 2 absent from the batch: its loss counts 0 and q keeps three entries."""
    import torch

    from grmu.robust import GroupDRO

    dro = GroupDRO(3, eta=1.0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    loss = dro(logits, torch.tensor([0, 0]), torch.tensor([0, 1]))
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0]), reduction="none")
    assert dro.q.shape == (3,) and float(dro.q[1]) > float(dro.q[2]) > 0
    assert float(loss) == pytest.approx(float(dro.q[0] * ce[0] + dro.q[1] * ce[1]), rel=1e-6)


@pytest.mark.parametrize("stage", ["evaluate", "retrain", "unlearn"])
def test_stages_check_the_forget_set_against_the_dataset(stage, prep, prepared_dir, tmp_path):
    """A forget file naming a test sample is refused before any model is loaded or trained."""
    from grmu.splits import save_forget
    from grmu.stages import evaluate, retrain, unlearn
    from tests.conftest import small_params

    test_idx = int(prep.indices("test")[0])
    f = tmp_path / "f.json"
    save_forget(f, [test_idx], [[int(prep.y[test_idx]), int(prep.a[test_idx])]], 0.5, 0, 1)
    missing = tmp_path / "missing.pt"
    run = {
        "evaluate": lambda: evaluate.run(
            small_params(), prepared_dir, tmp_path / "missing.npz", f, "x", tmp_path / "e.json"
        ),
        "retrain": lambda: retrain.run(small_params(), prepared_dir, "erm", f, 0, tmp_path / "r.pt"),
        "unlearn": lambda: unlearn.run(small_params(), prepared_dir, missing, f, 0, tmp_path / "u.pt"),
    }[stage]
    with pytest.raises(GrmuError, match=rf"sample {test_idx} is in the test split, not train"):
        run()


def test_unlearn_seeds_the_run_records_its_settings_and_applies_the_recipe_entry_of_its_ratio(
    prep, prepared_dir, tmp_path, monkeypatch, capsys
):
    """Same seed, same draws whatever the RNG state before the stage; the recipe entry that
    matches the forget set's ratio (celeba: miu + reweight at 0.9 sets lambda_mi 1); what the
    checkpoint, the return value, dvclive and the log line say about the run."""
    import dataclasses

    import numpy as np
    import torch

    from grmu.methods import get_method
    from grmu.models import load_checkpoint, model_for, new_model, save_checkpoint
    from grmu.runtime import run_info
    from grmu.splits import sample_forget, save_forget
    from grmu.stages import unlearn
    from tests.conftest import small_params

    seen = []

    def probe(ctx):
        seen.append(((float(torch.rand(1)), float(np.random.rand())), dict(ctx.options), ctx.live))
        return ctx.model

    probe_spec = dataclasses.replace(get_method("miu"), run=probe)
    monkeypatch.setattr(unlearn, "get_method", lambda name: probe_spec)
    p = small_params(method="miu", reweight=True, recipe="celeba")
    f = tmp_path / "f.json"
    save_forget(f, sample_forget(prep, [[1, 0]], 0.9, 0), [[1, 0]], 0.9, 0, 0)
    pre = tmp_path / "pre.pt"
    save_checkpoint(pre, new_model(p["model"], prep, 0, load_weights=False), {})
    for before in (1, 2):
        torch.manual_seed(before)
        np.random.seed(before)
        out = unlearn.run(p, prepared_dir, pre, f, 3, tmp_path / f"u{before}.pt", live_dir=tmp_path / f"live{before}")
    assert seen[0][0] == seen[1][0]
    assert seen[0][1]["lambda_mi"] == 1.0
    assert seen[0][2] is not None  # the method can log to the run's dvclive folder
    assert json.loads((tmp_path / "live1" / "metrics.json").read_text())["unlearn_seconds"] >= 0

    info = load_checkpoint(tmp_path / "u2.pt", model_for(p["model"], prep, load_weights=False))
    assert set(info) == {"name", "reweight", "recipe", "unlearn", "options", "source", "seed", "run"}
    assert info["name"] == "miu" and info["reweight"] is True and info["recipe"] == "celeba"
    assert info["unlearn"] == p["unlearn"] and info["options"] == seen[1][1] and info["seed"] == 3
    assert info["source"]["methods.miu.lambda_mi"] == "recipe" and info["run"] == run_info(3)
    assert {k: v for k, v in out.items() if k != "unlearn_seconds"} == info
    assert 0 <= out["unlearn_seconds"] < 600
    log = capsys.readouterr().out.strip().splitlines()
    assert log[-1].startswith("unlearn miu+reweight seed=3: ") and log[-1].endswith("s")
    unlearn.run(small_params(method="miu", reweight=False), prepared_dir, pre, f, 3, tmp_path / "u3.pt")
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("unlearn miu seed=3: ")


def test_evaluate_writes_the_run_and_the_model_info_of_its_outputs(prep, prepared_dir, tmp_path, capsys):
    from grmu.outputs import save_outputs
    from grmu.models import new_model
    from grmu.runtime import run_info
    from grmu.splits import sample_forget, save_forget
    from grmu.stages import evaluate
    from tests.conftest import small_params

    p = small_params()
    f = tmp_path / "f.json"
    save_forget(f, sample_forget(prep, [[1, 0]], 0.5, 2), [[1, 0]], 0.5, 2, 0)
    outputs = tmp_path / "m.npz"
    save_outputs(outputs, new_model(p["model"], prep, 0).eval(), prep, 512, {"epochs": 2, "run": {"seed": 7}}, "m")
    result = evaluate.run(p, prepared_dir, outputs, f, "retrain_gdro", tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text()) == result
    assert result["model"] == "retrain_gdro" and result["ratio"] == 0.5 and result["seed"] == 2
    assert result["groups"] == [[1, 0]] and result["trained"] == {"epochs": 2, "run": {"seed": 7}}
    assert result["run"] == run_info(2)
    m = result["metrics"]
    want = "retrain_gdro r=0.5 seed=2: " + " ".join(
        f"{k}={m[k]:.1f}" for k in ("RA", "UA", "TA", "MIA", "MIA_SVC", "EO", "GA")
    )
    assert capsys.readouterr().out.strip().splitlines()[-1] == want


# --- stages.retrain: the training itself is stubbed by a recorder of what the stage passes ----


def _stub_training(monkeypatch):
    from grmu.stages import retrain
    from grmu.train import ce_loss

    seen = {}

    def fake(params, cfg, prep, idx, seed, out, live_dir, name, loss=ce_loss, weights=None, settings=None):
        seen.update(
            params=params,
            cfg=cfg,
            prep=prep,
            idx=idx,
            seed=seed,
            out=out,
            live_dir=live_dir,
            name=name,
            loss=loss,
            weights=weights,
            settings=settings,
        )
        return {"name": name}

    monkeypatch.setattr(retrain, "train_and_save", fake)
    return seen


@pytest.mark.parametrize("variant", ["erm", "reweight", "gdro"])
def test_retrain_trains_on_the_remaining_set_with_its_variants_settings(
    prep, prepared_dir, monkeypatch, tmp_path, variant
):
    import numpy as np
    import torch

    from grmu.robust import GroupDRO, group_balanced_weights, reweight_weights
    from grmu.splits import remaining_indices, sample_forget, save_forget
    from grmu.stages import retrain
    from grmu.train import ce_loss
    from tests.conftest import small_params

    f = tmp_path / "f.json"
    forget = sample_forget(prep, [[1, 0]], 0.5, 3)
    save_forget(f, forget, [[1, 0]], 0.5, 3, 0)
    # the variant overrides lr (0.7 instead of train's 0.03) and keeps train's batch size (64)
    q = small_params(
        train={"lr": 0.03, "batch_size": 64},
        retrain={variant: {"lr": 0.7, "batch_size": None, **({"eta": 2.5} if variant == "gdro" else {})}},
    )
    seen = _stub_training(monkeypatch)
    out = retrain.run(q, prepared_dir, variant, f, 6, tmp_path / "m.pt", tmp_path / "live")
    assert out == {"name": f"retrain_{variant}"}
    idx = remaining_indices(prep, forget)
    assert seen["params"] is q and seen["seed"] == 6 and seen["name"] == f"retrain_{variant}"
    assert seen["out"] == tmp_path / "m.pt" and seen["live_dir"] == tmp_path / "live"
    assert np.array_equal(seen["idx"], idx) and np.array_equal(seen["prep"].g, prep.g)
    assert seen["cfg"] == {**q["train"], "lr": 0.7, "batch_size": 64}
    assert q["train"]["lr"] == 0.03  # the params themselves are left alone
    assert seen["settings"] == ({"eta": 2.5} if variant == "gdro" else {})  # recorded in the checkpoint
    if variant == "erm":
        assert seen["weights"] is None and seen["loss"] is ce_loss
    elif variant == "reweight":
        assert seen["loss"] is ce_loss
        want = reweight_weights(prep.g[prep.indices("train")], prep.g[idx], prep.n_groups)
        assert np.array_equal(seen["weights"], want) and not np.allclose(want, 1.0)
    else:
        assert np.array_equal(seen["weights"], group_balanced_weights(prep.g[idx], prep.n_groups))
        logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.5, 0.0]])
        y, g = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 3, 3])
        want = GroupDRO(prep.n_groups, 2.5)(logits, y, g)
        assert torch.isclose(seen["loss"](lambda x: x, logits, y, g), want)
        assert not torch.isclose(GroupDRO(prep.n_groups, 0.1)(logits, y, g), want)  # eta matters here


def test_retrain_overrides_the_batch_size_and_falls_back_to_trains_lr(prep, prepared_dir, monkeypatch, tmp_path):
    from grmu.splits import sample_forget, save_forget
    from grmu.stages import retrain
    from tests.conftest import small_params

    f = tmp_path / "f.json"
    save_forget(f, sample_forget(prep, [[1, 0]], 0.5, 3), [[1, 0]], 0.5, 3, 0)
    q = small_params(train={"lr": 0.03, "batch_size": 64}, retrain={"erm": {"lr": None, "batch_size": 32}})
    seen = _stub_training(monkeypatch)
    retrain.run(q, prepared_dir, "erm", f, 6, tmp_path / "m.pt")
    assert seen["cfg"]["lr"] == 0.03 and seen["cfg"]["batch_size"] == 32 and seen["live_dir"] is None


def test_retrain_refuses_an_unknown_variant_by_name(prepared_dir, tmp_path):
    from grmu.stages import retrain
    from tests.conftest import small_params

    with pytest.raises(GrmuError, match=r"^unknown retrain variant 'dro'; valid: erm, reweight, gdro$"):
        retrain.run(small_params(), prepared_dir, "dro", tmp_path / "f.json", 0, tmp_path / "m.pt")


def test_group_dro_starts_from_the_uniform_distribution():
    from grmu.robust import GroupDRO

    assert GroupDRO(4, eta=0.1).q.tolist() == [0.25, 0.25, 0.25, 0.25]


# ---------------------------------------------------------------------------- MIA attackers' settings


class _Recorder:
    """Stands in for a scikit-learn classifier: records its settings, predicts from ``answers``
    (one (predict, predict_proba column 1) pair per instance, in construction order)."""

    made: list = []
    answers: list = []

    def __init__(self, **kw):
        self.kw = kw
        self.i = len(_Recorder.made)
        _Recorder.made.append(kw)

    def fit(self, X, lab):
        assert X.shape == (len(lab), 1)
        return self

    def set_params(self, **kw):
        self.kw = {**self.kw, **kw}
        return self

    def predict(self, X):
        assert self.kw.get("n_jobs", 1) == 1, "predictions summed on several threads: order not fixed"
        return np.full(len(X), _Recorder.answers[self.i][0])

    def predict_proba(self, X):
        assert self.kw.get("n_jobs", 1) == 1, "predictions summed on several threads: order not fixed"
        p = np.linspace(0, 1, len(X)) if _Recorder.answers[self.i][1] == "up" else np.linspace(1, 0, len(X))
        return np.stack([1 - p, p], 1)


@pytest.fixture
def recorder(monkeypatch):
    import sklearn.ensemble
    import sklearn.svm

    _Recorder.made, _Recorder.answers = [], []
    monkeypatch.setattr(sklearn.ensemble, "RandomForestClassifier", _Recorder)
    monkeypatch.setattr(sklearn.svm, "SVC", _Recorder)
    return _Recorder


def test_mia_grows_one_forest_of_100_per_criterion_of_the_papers_grid(monkeypatch):
    """The paper's grid; its forests are read off one forest of 100 trees per criterion, grown on
    every core (the forest does not depend on it). That each size answers as a fresh forest of that
    size, the first of the best winning: tests/test_metrics.py (fresh forests compared)."""
    import sklearn.ensemble

    from grmu.metrics import MIA_GRID, mia_efficacy

    grown = []

    class Spy(sklearn.ensemble.RandomForestClassifier):
        def fit(self, X, y):
            grown.append((self.n_estimators, self.criterion, self.random_state, self.n_jobs))
            return super().fit(X, y)

    monkeypatch.setattr(sklearn.ensemble, "RandomForestClassifier", Spy)
    assert MIA_GRID == [(20, "gini"), (20, "entropy"), (50, "gini"), (50, "entropy"), (100, "gini"), (100, "entropy")]
    losses = [np.linspace(0, 1, 8) + k for k in range(4)]
    assert mia_efficacy(*losses)["MIA_config"] == "20-gini"
    assert grown == [(100, "gini", 0, -1), (100, "entropy", 0, -1)]
    grown.clear()
    assert mia_efficacy(*losses, mode="single")["MIA_config"] == "100-gini"
    assert grown == [(100, "gini", 0, -1)]


def test_mia_svc_uses_the_sharp_unlearn_svm(recorder):
    from grmu.metrics import svc_mia_efficacy

    recorder.answers = [(0, "up")]
    assert svc_mia_efficacy(np.ones(6), np.zeros(3), np.ones(2)) == 100.0
    assert recorder.made == [{"C": 3, "gamma": "auto", "kernel": "rbf"}]


def test_split_metrics_runs_the_forest_grid_unless_told_otherwise(monkeypatch):
    import grmu.metrics as M

    modes = []
    monkeypatch.setattr(M, "mia_efficacy", lambda *a: modes.append(a[4]) or {"MIA": 0.0})
    monkeypatch.setattr(M, "svc_mia_efficacy", lambda *a: 0.0)
    y = np.arange(12) % 2
    sets = {"remaining": np.arange(4), "forget": np.arange(4, 6), "val": np.arange(6, 8), "test": np.arange(8, 12)}
    M.split_metrics(y, np.ones(12), y, y, y, sets, [[1, 1]], 4)
    assert modes == ["best_of_grid"]


def test_undefined_fairness_and_accuracy_are_nan_without_numpy_warnings():
    """An empty set or a one-sided attribute gives NaN by the guard, not by averaging nothing
    (which would also print numpy's "Mean of empty slice" in every evaluation log)."""
    import warnings

    from grmu.metrics import accuracy, demographic_parity, equal_opportunity, equalized_odds

    e = np.array([], dtype=int)
    y, a = np.array([0, 1, 1, 0]), np.array([1, 1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(accuracy(e, e))
        assert np.isnan(demographic_parity(y, y, a, [[1, 1]]))  # everyone in S
        assert np.isnan(demographic_parity(y, y, 1 - a, [[1, 1]]))  # no one in S
        assert np.isnan(equal_opportunity(y, y, a, [[1, 1]]))  # no positive outside S
        assert np.isnan(equal_opportunity(y, y, np.array([0, 0, 1, 0]), [[0, 1]]))  # no positive in S
        # one cell per target: every gap undefined; then one target with both cells
        assert np.isnan(equalized_odds(y, y, a, [[1, 1]]))
        assert (
            equalized_odds(np.array([0, 1, 1, 0, 0]), np.array([0, 1, 1, 0, 0]), np.array([1, 1, 1, 1, 0]), [[1, 1]])
            == 0.0
        )


# ---------------------------------------------------------------------------- report: what summary.json says


def test_summary_names_the_run_and_rounds_tow_with_the_population_std(thirds):
    df = add_gaps(collect(thirds, [0.5], [0, 1]))
    s = summary_json(df, "scrub", True)
    assert (s["dataset"], s["pretrain"], s["unlearn_sam"]) == (None, "plain", "plain")
    s = summary_json(df, "scrub", True, pretrain="SAM-min rho=0.1", unlearn="ASAM-max rho=1", dataset="mnist")
    assert (s["dataset"], s["pretrain"], s["unlearn_sam"]) == ("mnist", "SAM-min rho=0.1", "ASAM-max rho=1")
    tows = [100 * (1 - 1 / 300) ** 3, 100 * 0.98**3]  # seeds 0 and 1: 99.00334, 94.1192
    assert s["ToW"] == 96.561 and s["ToW_std"] == round(abs(tows[0] - tows[1]) / 2, 3) == 2.442


def test_collect_gives_old_evaluations_a_nan_mia_svc_column(tmp_path):
    for model in MODELS:
        path = tmp_path / model / "0.5-0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"metrics": {k: 50.0 for k in KEYS} | {"group_acc": [1.0]}}))  # no MIA_SVC
    df = collect(tmp_path, [0.5], [0])
    assert df["MIA_SVC"].dtype == np.float64 and df["MIA_SVC"].isna().all()


def test_curve_metric_is_ga_where_measured_else_ua():
    import pandas as pd

    from grmu.report.gaps import curve_metric

    assert curve_metric(pd.DataFrame({"GA": [1.0, np.nan], "UA": [2.0, 3.0]})) == "GA"
    assert curve_metric(pd.DataFrame({"GA": [np.nan, np.nan], "UA": [2.0, 3.0]})) == "UA"
    assert curve_metric(pd.DataFrame({"UA": [2.0, 3.0]})) == "UA"


def test_avg_gap_of_a_dataset_without_groups_averages_the_measured_metrics_only(tmp_path):
    """mnist has no EO and (random forget sets) no GA: the gap is over RA, UA, TA, MIA."""
    for model in MODELS:
        path = tmp_path / model / "0.1-0.json"
        path.parent.mkdir(parents=True)
        m = {"RA": 90.0, "UA": 80.0, "TA": 70.0, "MIA": 60.0, "MIA_SVC": 5.0, "group_acc": [1.0]}
        if model == "unlearned":
            m.update(RA=89.0, UA=76.0, TA=70.0, MIA=53.0)
        path.write_text(json.dumps({"metrics": m}))
    df = add_gaps(collect(tmp_path, [0.1], [0]))
    assert df[df["model"] == "unlearned"]["avg_gap"].iloc[0] == pytest.approx(100 - (1 + 4 + 0 + 7) / 4)


# ---------------------------------------------------------------------------- REWEIGHT weights


def test_reweight_weights_with_a_group_absent_from_train_and_a_group_of_one_survivor():
    """Group 3 has no training sample (the last group: bincount must still count 4 groups);
    group 1 keeps one survivor of 3 (alpha 3, not 0); no division warning for group 3."""
    import warnings

    from grmu.robust import group_balanced_weights, reweight_weights

    g_train = np.array([0, 0, 1, 1, 1, 2, 2])
    g_rem = np.array([0, 0, 1, 2, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reweight_weights(g_train, g_rem, 4).tolist() == [1.0, 1.0, 3.0, 1.0, 1.0]
        assert group_balanced_weights(g_rem, 4).tolist() == [2.5, 2.5, 5.0, 2.5, 2.5]
