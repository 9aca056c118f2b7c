"""Aggregation: deltas against RETRAIN+REWEIGHT of the same seed, then mean ± std over seeds."""

import json

import pytest

from grmu.report.gaps import MODELS, add_gaps, collect, summary_json
from grmu.report.tables import labels_for, summary_table

KEYS = ("RA", "UA", "TA", "MIA", "EO", "GA")


def write_eval(root, model, ratio, seed, value, ga=None):
    m = {k: value for k in KEYS}
    if ga is not None:
        m["GA"] = ga
    m.update({"WG": value, "DP": 0.0, "EP": 0.0, "MIA_AUC": 50.0, "MIA_SVC": 100 - value, "group_acc": [value] * 4})
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


def test_tow_mia_and_the_reference_model_choice(evals):
    df = add_gaps(collect(evals, [0.5], [0, 1]))
    unl = df[df["model"] == "unlearned"].set_index("seed")
    # |Δ| = 2 on RA, TA and on MIA_SVC (100 - value): 100 * 0.98^3 in both seeds
    assert unl.loc[0, "ToW_MIA"] == pytest.approx(100 * 0.98**3)
    # against plain RETRAIN (40 everywhere, MIA_SVC 60): |Δ| = 12 / 18 in seeds 0 / 1
    erm = add_gaps(collect(evals, [0.5], [0, 1]), "retrain_erm")
    unl = erm[erm["model"] == "unlearned"].set_index("seed")
    assert list(unl["avg_gap"]) == [88.0, 82.0]
    assert unl.loc[1, "ToW"] == pytest.approx(100 * 0.82**3)
    assert unl.loc[0, "ToW_MIA"] == pytest.approx(100 * 0.88**3)
    s = summary_json(erm, "scrub", False, "retrain_erm")
    assert s["reference"] == "retrain_erm" and s["avg_gap"] == 85.0 and s["avg_gap_std"] == 3.0
    assert s["ToW"] == pytest.approx(round(100 * (0.88**3 + 0.82**3) / 2, 3))
    assert "avg_gap" in s["r0.5"]["retrain_reweight"] and "avg_gap" not in s["r0.5"]["retrain_erm"]
    table = summary_table(erm, labels_for("scrub", False), "retrain_erm")
    assert table[table["model"] == "RETRAIN"].iloc[0]["ToW"] == "–"
    assert (
        table[table["model"] == "SCRUB"].iloc[0]["ToW"] == f"{100 * (0.88**3 + 0.82**3) / 2:.1f} ± "
        f"{100 * (0.88**3 - 0.82**3) / 2:.1f}"
    )


def test_an_unknown_reference_is_refused(evals):
    from grmu import GrmuError

    with pytest.raises(GrmuError, match="eval.reference 'retrain' is unknown; valid: retrain_reweight, retrain_erm"):
        add_gaps(collect(evals, [0.5], [0, 1]), "retrain")


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
            write_eval(
                tmp_path, model, ratio, seed, {"retrain_reweight": 50.0, "unlearned": 50.0 + delta}.get(model, 40.0)
            )
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


def test_report_groups_references_by_pretraining_and_labels_every_row(evals):
    from grmu.report.compare import compare

    per_seed = add_gaps(collect(evals, [0.5], [0, 1]))
    sharp = per_seed.copy()
    sharp.loc[sharp["model"] == "retrain_erm", "RA"] = 77.0  # the SAM group's own references
    exps = [
        {
            "name": "a",
            "method": "finetune",
            "reweight": False,
            "pretrain": "plain",
            "unlearn_sam": "plain",
            "per_seed": per_seed,
        },
        {
            "name": "b",
            "method": "neggrad",
            "reweight": False,
            "pretrain": "SAM-min rho=0.1",
            "unlearn_sam": "plain",
            "per_seed": sharp,
        },
        {
            "name": "c",
            "method": "neggrad",
            "reweight": False,
            "pretrain": "plain",
            "unlearn_sam": "SAM-min rho=0.05",
            "per_seed": per_seed,
        },
        {
            "name": "d",
            "method": "finetune",
            "reweight": False,
            "pretrain": "plain",
            "unlearn_sam": "plain",
            "per_seed": per_seed,
        },  # same label as "a": dropped
    ]
    df, labels = compare(exps)
    assert labels["retrain_erm@SAM-min rho=0.1"] == "RETRAIN [pretrain SAM-min rho=0.1]"
    assert labels["retrain_erm@plain"] == "RETRAIN [pretrain plain]"
    assert labels["exp:b"] == "NEGGRAD [pretrain SAM-min rho=0.1]"
    assert labels["exp:c"] == "NEGGRAD (SAM-min rho=0.05) [pretrain plain]"
    assert "exp:d" not in labels
    assert set(df[df["model"] == "retrain_erm@SAM-min rho=0.1"]["RA"]) == {77.0}
    assert set(df[df["model"] == "retrain_erm@plain"]["RA"]) == {40.0}
    table = summary_table(df, labels)
    assert table[table["model"] == "RETRAIN+REWEIGHT [pretrain plain]"].iloc[0]["avg. gap"] == "–"
    # all plain: no tags at all, as before
    df, labels = compare([exps[0]])
    assert labels["retrain_erm"] == "RETRAIN" and labels["exp:a"] == "FINETUNE"


def test_report_groups_references_by_forget_set_kind(evals):
    from grmu.report.compare import compare

    per_seed = add_gaps(collect(evals, [0.5], [0, 1]))
    high = per_seed.copy()
    high.loc[high["model"] == "retrain_erm", "RA"] = 66.0  # the high-memorization forget sets' own RETRAIN
    exps = [
        {
            "name": "a",
            "method": "finetune",
            "reweight": False,
            "forget": "memorization low by heldout",
            "per_seed": per_seed,
        },
        {
            "name": "b",
            "method": "finetune",
            "reweight": False,
            "forget": "memorization high by heldout",
            "per_seed": high,
        },
    ]
    df, labels = compare(exps)
    assert labels["retrain_erm@memorization high by heldout"] == "RETRAIN [forget memorization high by heldout]"
    assert labels["exp:a"] == "FINETUNE [forget memorization low by heldout]"
    assert labels["exp:b"] == "FINETUNE [forget memorization high by heldout]"  # not dropped as a duplicate
    assert set(df[df["model"] == "retrain_erm@memorization high by heldout"]["RA"]) == {66.0}
    assert set(df[df["model"] == "retrain_erm@memorization low by heldout"]["RA"]) == {40.0}
    # with SAM pretraining as well, both parts are named
    exps[1]["pretrain"] = "SAM-min rho=0.1"
    assert compare(exps)[1]["exp:b"] == "FINETUNE [pretrain SAM-min rho=0.1, forget memorization high by heldout]"


def test_forget_tag_names_the_kind_level_and_score():
    from grmu.stages.aggregate import forget_tag

    p = {"forget": {"kind": "memorization", "level": "mix"}, "memorization": {"score": "auto"}}
    assert forget_tag(p) == "memorization mix by heldout"
    p["memorization"]["score"] = "confidence"
    assert forget_tag(p) == "memorization mix by confidence"
    assert forget_tag({"forget": {"kind": "random", "level": "mix"}, "memorization": {"score": "auto"}}) == "random"


def test_sam_tag_labels():
    from grmu.sam import sam_tag

    assert sam_tag({"mode": "none", "rho": 0.1, "lamb": 1.0, "adaptive": False}) == "plain"
    assert sam_tag(None) == "plain"
    assert sam_tag({"mode": "min", "rho": 0.1, "lamb": 1.0, "adaptive": False}) == "SAM-min rho=0.1"
    assert sam_tag({"mode": "max", "rho": 1.0, "lamb": 0.5, "adaptive": True}) == "ASAM-max rho=1 lamb=0.5"


def test_report_keeps_the_experiments_named():
    from grmu import GrmuError
    from grmu.report.compare import named

    exps = [{"name": "gm-group-scrub"}, {"name": "mem-high-salun"}, {"name": "gm-low-salun"}, {"name": "a1b2c3"}]
    assert named(exps, None) == exps
    assert [e["name"] for e in named(exps, ["gm-*"])] == ["gm-group-scrub", "gm-low-salun"]
    assert [e["name"] for e in named(exps, ["*-salun", "a1b2c3"])] == ["mem-high-salun", "gm-low-salun", "a1b2c3"]
    with pytest.raises(GrmuError, match="no experiment matches --exp x-\\*; the experiments are: gm-group-scrub, mem"):
        named(exps, ["x-*"])


def test_report_keeps_one_dataset():
    from grmu import GrmuError
    from grmu.report.compare import of_dataset

    exps = [
        {"name": "a", "dataset": "mnist"},
        {"name": "b", "dataset": "colored_mnist"},
        {"name": "c", "dataset": "mnist"},
    ]
    assert [e["name"] for e in of_dataset(exps, None)] == ["a", "c"]
    assert [e["name"] for e in of_dataset(exps, "colored_mnist")] == ["b"]
    with pytest.raises(GrmuError, match="no results on dataset 'cifar10'; the results are on: colored_mnist, mnist"):
        of_dataset(exps, "cifar10")
