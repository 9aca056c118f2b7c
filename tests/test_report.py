"""Aggregation: deltas against RETRAIN+REWEIGHT of the same seed, then mean ± std over seeds."""
import json

import pandas as pd
import pytest

from grmu.report.gaps import MODELS, add_gaps, collect, summary_json
from grmu.report.tables import labels_for, summary_table

KEYS = ("RA", "UA", "TA", "MIA", "EO", "GA")


def write_eval(root, model, ratio, seed, value, ga=None):
    m = {k: value for k in KEYS}
    if ga is not None:
        m["GA"] = ga
    m.update({"WG": value, "DP": 0.0, "EP": 0.0, "MIA_AUC": 50.0, "group_acc": [value] * 4})
    path = root / model / f"{ratio}-{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": m}))


@pytest.fixture
def evals(tmp_path):
    # the gold model scores 50 on every metric in seed 0 and 60 in seed 1; the unlearned model
    # 52 and 58: |Δ| = 2 for each metric in both seeds, so avg. gap = 98 with std 0. Against a
    # pooled gold (55) it would be 97 -> the test catches a cross-seed comparison.
    for seed, gold, unl in [(0, 50.0, 52.0), (1, 60.0, 58.0)]:
        for model in MODELS:
            write_eval(tmp_path, model, 0.5, seed, {"retrain_reweight": gold, "unlearned": unl}.get(model, 40.0))
    return tmp_path


def test_gap_uses_the_gold_model_of_the_same_seed(evals):
    df = add_gaps(collect(evals, [0.5], [0, 1]))
    unl = df[df["model"] == "unlearned"]
    assert list(unl["avg_gap"]) == [98.0, 98.0]
    assert (df[df["model"] == "retrain_reweight"]["avg_gap"] == 100.0).all()
    s = summary_json(df, "finetune", False)
    assert s["avg_gap"] == 98.0 and s["avg_gap_std"] == 0.0


def test_table_has_a_row_per_model_with_mean_and_std(evals):
    df = add_gaps(collect(evals, [0.5], [0, 1]))
    table = summary_table(df, labels_for("scrub", True))
    assert list(table["model"]) == ["PRETRAIN", "RETRAIN", "RETRAIN+REWEIGHT", "RETRAIN+Group-DRO", "SCRUB+REWEIGHT"]
    row = table[table["model"] == "SCRUB+REWEIGHT"].iloc[0]
    assert row["RA"] == "55.0 ± 3.0" and row["ΔRA"] == "2.0" and row["avg. gap"] == "98.0 ± 0.0"
    assert table[table["model"] == "RETRAIN+REWEIGHT"].iloc[0]["avg. gap"] == "–"


def test_missing_evaluation_names_the_file(evals):
    from grmu import GrmuError

    with pytest.raises(GrmuError, match=r"missing evaluation: .*pretrain/0.9-0.json"):
        collect(evals, [0.5, 0.9], [0])


def test_environments_name_every_version_that_differs(evals):
    from grmu.report.tables import environments

    for model in MODELS:
        for seed in (0, 1):
            path = evals / model / f"0.5-{seed}.json"
            d = json.loads(path.read_text())
            torch_version = "2.14.1" if (model, seed) != ("unlearned", 1) else "2.15.0"
            d["run"] = {"grmu": "0.1.0", "torch": "2.14.1", "device": "cpu (2 cores)"}
            d["trained"] = {"run": {"grmu": "0.1.0", "torch": torch_version, "device": "NVIDIA H100"}}
            path.write_text(json.dumps(d))
    env = environments(evals, [0.5], [0, 1])
    assert env["grmu"] == "0.1.0"
    assert env["torch"] == "2.14.1, 2.15.0"  # one unlearned model was trained elsewhere
    assert env["device"] == "NVIDIA H100, cpu (2 cores)"


def test_overall_gap_is_mean_over_seeds_of_each_seeds_mean_over_ratios(tmp_path):
    """Two ratios, two seeds, asymmetric: seed 0 has |Δ| 2 (r=0.5) and 6 (r=0.9), seed 1 has 4
    and 4. Per seed over ratios: 96 and 96 -> 96 ± 0; grouped by ratio instead it would be
    97 and 95 -> 96 ± 1, and pooled-std differs too."""
    for ratio, seed, delta in [(0.5, 0, 2.0), (0.9, 0, 6.0), (0.5, 1, 4.0), (0.9, 1, 4.0)]:
        for model in MODELS:
            write_eval(tmp_path, model, ratio, seed, {"retrain_reweight": 50.0, "unlearned": 50.0 + delta}.get(model, 40.0))
    df = add_gaps(collect(tmp_path, [0.5, 0.9], [0, 1]))
    s = summary_json(df, "finetune", False)
    assert s["avg_gap"] == 96.0 and s["avg_gap_std"] == 0.0
    assert s["r0.5"]["unlearned"]["avg_gap"] == 97.0 and s["r0.9"]["unlearned"]["avg_gap"] == 95.0
    assert s["r0.9"]["unlearned"]["RA"] == 55.0 and s["r0.5"]["retrain_reweight"]["RA"] == 50.0
    table = summary_table(df, labels_for("finetune", False))
    rows = table[table["model"] == "FINETUNE"]
    assert list(rows["ratio"]) == ["0.5", "0.9"]
    assert list(rows["avg. gap"]) == ["97.0 ± 1.0", "95.0 ± 1.0"]
    assert list(rows["ΔRA"]) == ["3.0", "5.0"]


def test_gap_is_absolute_in_both_directions(tmp_path):
    """A model below the reference by d and one above by d have the same gap."""
    for seed, unl in [(0, 47.0), (1, 53.0)]:
        for model in MODELS:
            write_eval(tmp_path, model, 0.5, seed, {"retrain_reweight": 50.0, "unlearned": unl}.get(model, 40.0))
    df = add_gaps(collect(tmp_path, [0.5], [0, 1]))
    assert list(df[df["model"] == "unlearned"]["avg_gap"]) == [97.0, 97.0]
    assert list(df[df["model"] == "pretrain"]["d_GA"]) == [10.0, 10.0]
