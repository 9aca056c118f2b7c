"""The ToW-vs-memorization figure of docs/results.md, from `grmu report`'s table of memorization
experiments (tools/memorization_comparison.sh writes reports/memorization/methods.csv):
left, the forget-set accuracy UA of PRETRAIN and RETRAIN at each memorization level (how much
there is to forget); right, each method's ToW and ToW-MIA at each level (mean ± std over seeds).

    .venv/bin/python tools/memorization_figure.py [--table reports/memorization/methods.csv]
"""

import argparse
import re
from pathlib import Path

import pandas as pd

from grmu.report.plots import _pyplot, save_figure

LEVELS = ("low", "mid", "high", "mix")
LABEL = re.compile(r"^(?P<model>.+?) \[forget memorization (?P<level>\w+) by (?P<score>\w+)\]$")


def mean_std(cell: str) -> tuple[float, float]:
    mean, _, std = str(cell).partition(" ± ")
    return float(mean), float(std or 0)


def long_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in table.iterrows():
        m = LABEL.match(str(r["model"]))
        if not m:
            continue
        row = {"model": m["model"], "level": m["level"]}
        for key in ("UA", "ToW", "ToW-MIA"):
            if r[key] != "–":
                row[key], row[f"{key}_std"] = mean_std(r[key])
        rows.append(row)
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default="reports/memorization/methods.csv")
    ap.add_argument("--out", default=None, help="PNG path (default: tow_vs_memorization.png beside the table)")
    args = ap.parse_args()
    df = long_table(pd.read_csv(args.table))
    levels = [lv for lv in LEVELS if lv in set(df["level"])]
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(levels))
    for model in ("PRETRAIN", "RETRAIN"):
        sub = df[df["model"] == model].set_index("level").reindex(levels)
        left.errorbar(x, sub["UA"], yerr=sub["UA_std"], marker="o", capsize=3, label=model)
    left.set(
        xticks=list(x),
        xticklabels=levels,
        xlabel="memorization level of the forget set",
        ylabel="UA: forget-set accuracy (%)",
        title="What there is to forget",
    )
    left.legend()
    methods = [
        m
        for m in dict.fromkeys(df["model"])
        if m not in ("PRETRAIN", "RETRAIN", "RETRAIN+REWEIGHT", "RETRAIN+Group-DRO")
    ]
    for model in methods:
        sub = df[df["model"] == model].set_index("level").reindex(levels)
        line = right.errorbar(x, sub["ToW"], yerr=sub["ToW_std"], marker="o", capsize=3, label=f"{model} ToW")
        right.plot(x, sub["ToW-MIA"], marker="x", linestyle=":", color=line[0].get_color(), label=f"{model} ToW-MIA")
    right.set(
        xticks=list(x),
        xticklabels=levels,
        xlabel="memorization level of the forget set",
        ylabel="vs RETRAIN (%)",
        title="ToW (solid) and ToW-MIA (dotted)",
    )
    right.legend(fontsize=7, ncol=2)
    out = Path(args.out) if args.out else Path(args.table).with_name("tow_vs_memorization.png")
    save_figure(fig, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
