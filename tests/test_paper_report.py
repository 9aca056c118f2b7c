"""`grmu report --paper`: the paper's tables as data (checked against numbers typed from the paper)
and a run's results put next to them."""

import json

import pandas as pd
import pytest
import yaml

from grmu import GrmuError
from grmu.cli import main
from grmu.report.paper import compare_to_paper, paper_table


def paper_value(dataset, ratio, model, reweight, metric, groups=1):
    t = paper_table()
    row = t[
        (t["dataset"] == dataset)
        & (t["groups"] == groups)
        & (t["ratio"] == ratio)
        & (t["model"] == model)
        & (t["reweight"] == reweight)
        & (t["metric"] == metric)
    ]
    assert len(row) == 1, (dataset, ratio, model, reweight, metric)
    return float(row["mean"].iloc[0])


@pytest.mark.parametrize(
    "dataset,ratio,model,reweight,metric,groups,want",
    [
        # the paper's appendix tables (3-seed means) and its headline avg. gaps, typed from the paper
        ("celeba", 0.5, "pretrain", False, "UA", 1, 41.9),
        ("celeba", 0.5, "retrain_erm", False, "GA", 1, 34.4),
        ("celeba", 0.5, "retrain_reweight", True, "MIA", 1, 2.2),
        ("celeba", 0.5, "miu", True, "avg_gap", 1, 99.0),
        ("celeba", 0.1, "miu", True, "avg_gap", 1, 99.4),
        ("celeba", 0.9, "miu", True, "avg_gap", 1, 98.8),
        ("celeba", 0.5, "miu", False, "avg_gap", 1, 98.0),
        ("waterbirds", 0.5, "miu", True, "RA", 1, 99.9),
        ("waterbirds", 0.5, "retrain_reweight", True, "UA", 1, 59.5),
        ("waterbirds", 0.9, "miu", True, "avg_gap", 1, 97.2),
        ("waterbirds", 0.9, "scrub", True, "avg_gap", 1, 93.6),
        ("waterbirds", 0.5, "miu", False, "avg_gap", 1, 95.3),
        ("fairface", 0.5, "pretrain", False, "GA", 1, 71.2),
        ("fairface", 0.5, "miu", True, "avg_gap", 1, 98.7),
        ("fairface", 0.5, "miu", False, "avg_gap", 1, 98.1),
        ("fairface", 0.5, "miu", True, "avg_gap", 9, 99.0),
        ("fairface", 0.5, "miu", True, "avg_gap", 25, 98.3),
        ("multinli", 0.5, "miu", True, "UA", 1, 67.0),
        ("multinli", 0.5, "retrain_reweight", True, "EO", 1, 16.2),
    ],
)
def test_the_papers_tables_hold_its_published_numbers(dataset, ratio, model, reweight, metric, groups, want):
    assert paper_value(dataset, ratio, model, reweight, metric, groups) == want


def test_every_table_has_the_references_and_four_methods_with_and_without_reweight():
    t = paper_table()
    for (dataset, groups, ratio), at in t.groupby(["dataset", "groups", "ratio"]):
        models = set(zip(at["model"], at["reweight"]))
        assert models == {("pretrain", False), ("retrain_erm", False), ("retrain_reweight", True)} | {
            (m, rw) for m in ("l1_sparse", "salun", "scrub", "miu") for rw in (False, True)
        }, (dataset, groups, ratio)
        refs = at["model"].isin(["pretrain", "retrain_erm", "retrain_reweight"])
        assert set(at[refs]["metric"]) == {"RA", "UA", "TA", "MIA", "EO", "GA"}  # no avg. gap for references
        assert set(at[~refs]["metric"]) == {"RA", "UA", "TA", "MIA", "EO", "GA", "avg_gap"}


def per_seed(rows):
    return pd.DataFrame(rows, columns=["model", "ratio", "seed", "RA", "UA", "avg_gap"])


def test_ours_is_put_next_to_the_papers_row_of_the_same_model_ratio_and_reweight():
    df = per_seed(
        [
            ("pretrain", 0.5, 0, 97.0, 40.0, None),
            ("pretrain", 0.5, 1, 95.0, 44.0, None),
            ("retrain_reweight", 0.5, 0, 96.0, 39.0, None),
            ("retrain_reweight", 0.5, 1, 96.0, 41.0, None),
            ("unlearned", 0.5, 0, 96.0, 40.0, 97.0),
            ("unlearned", 0.5, 1, 96.0, 42.0, 99.0),
            ("unlearned", 0.7, 0, 1.0, 1.0, 1.0),  # a ratio the paper does not report
        ]
    )
    cmp = compare_to_paper(df, "celeba", "miu", True).set_index(["ratio", "model", "metric"])
    assert set(cmp.index.get_level_values("ratio")) == {0.5}
    row = cmp.loc[(0.5, "pretrain", "RA")]
    assert (row["ours"], row["ours_std"], row["paper"]) == (96.0, 1.0, 96.2) and row["diff"] == pytest.approx(-0.2)
    assert cmp.loc[(0.5, "pretrain", "UA"), "paper"] == 41.9
    assert cmp.loc[(0.5, "retrain_reweight", "UA"), "paper"] == 39.7  # RETRAIN with REWEIGHT, not plain (31.3)
    assert cmp.loc[(0.5, "unlearned", "avg_gap"), "paper"] == 99.0  # MIU + REWEIGHT
    assert cmp.loc[(0.5, "unlearned", "avg_gap"), "diff"] == pytest.approx(-1.0)
    assert ("0.5", "pretrain", "avg_gap") not in cmp.index and (0.5, "pretrain", "avg_gap") not in cmp.index
    no_rw = compare_to_paper(df, "celeba", "miu", False).set_index(["ratio", "model", "metric"])
    assert no_rw.loc[(0.5, "unlearned", "avg_gap"), "paper"] == 98.0  # MIU without REWEIGHT
    assert no_rw.loc[(0.5, "unlearned", "UA"), "paper"] == 36.3
    nine = compare_to_paper(df, "fairface", "miu", True, groups=9).set_index(["ratio", "model", "metric"])
    assert nine.loc[(0.5, "unlearned", "avg_gap"), "paper"] == 99.0
    other = compare_to_paper(df, "celeba", "finetune", False)
    assert "unlearned" not in set(other["model"]) and "pretrain" in set(other["model"])
    with pytest.raises(
        GrmuError,
        match=r"the paper reports no results for colored_mnist with 1 forget group\(s\); "
        r"it reports: celeba \(1 group\), waterbirds",
    ):
        compare_to_paper(df, "colored_mnist", "miu", True)
    with pytest.raises(GrmuError, match=r"no results for fairface with 4 forget group"):
        compare_to_paper(df, "fairface", "miu", True, groups=4)


def write_run(
    path, dataset="waterbirds", method="scrub", reweight=True, multi_group=None, reference="retrain_reweight", ratio=0.9
):
    (path / "metrics").mkdir(parents=True)
    per_seed([("pretrain", ratio, 0, 98.0, 70.0, None), ("unlearned", ratio, 0, 99.0, 60.0, 90.0)]).to_csv(
        path / "metrics/per_seed.csv", index=False
    )
    (path / "metrics/summary.json").write_text(
        json.dumps(
            {"dataset": dataset, "method": method, "reweight": reweight, "forget": "group", "reference": reference}
        )
    )
    (path / "params.yaml").write_text(yaml.safe_dump({"forget": {"groups": None, "multi_group": multi_group}}))


def test_cli_prints_the_comparison_of_the_workspace(tmp_path, capsys):
    write_run(tmp_path / "a")
    assert main(["report", "--paper", "--repo", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "waterbirds (1 forget group)" in out and "ratio 0.9" in out
    assert "| PRETRAIN | 98.0 / 98.6 (-0.6) | 70.0 / 76.0 (-6.0) | – |" in out
    assert "| SCRUB+REWEIGHT | 99.0 / " in out and "90.0 / 93.6 (-3.6) |" in out
    write_run(tmp_path / "b", dataset="fairface", method="finetune", multi_group=5, reference="retrain_erm", ratio=0.5)
    assert main(["report", "--paper", "--repo", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "fairface (25 forget groups)" in out and "the paper reports no FINETUNE+REWEIGHT" in out
    assert "avg. gap is against retrain_erm here" in out and "| PRETRAIN | 98.0 / 65.1 (+32.9) |" in out
    write_run(tmp_path / "c", dataset="fairface", multi_group=5)  # ratio 0.9: not in the 25-group table
    assert main(["report", "--paper", "--repo", str(tmp_path / "c")]) == 0
    assert "(no ratio of this run is in the paper's tables)" in capsys.readouterr().out
    assert main(["report", "--paper", "--repo", str(tmp_path / "none")]) == 2
    assert "no results to compare:" in capsys.readouterr().err
