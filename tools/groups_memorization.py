"""Where the two halves meet, on the embedded default (colored_mnist): how memorized is the
group-robust forget group, and is a group forget set harder to unlearn than a memorization
forget set of the same size? Run after tools/groups_vs_memorization.sh, which leaves the
held-out memorization scores of every seed in data/memorization/ and writes the methods table.

    .venv/bin/python tools/groups_memorization.py [--out reports/groups_memorization]

Writes groups.md / groups.csv (per (y, a) group of the train split: its size, its mean
memorization score, the share of its samples scoring >= 0.5, and its share of the n most
memorized training samples, n = the group forget set's size; mean ± std over seeds) and
groups_vs_memorization.png (left: those per-group means; right: each method's ToW for the
group forget set next to random and memorization forget sets of the same size).
"""

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from memorization_figure import mean_std  # tools/, beside this script

from grmu.memorization import load_scores
from grmu.prepared import load_prepared
from grmu.report.plots import _pyplot, save_figure
from grmu.report.tables import to_markdown

LABEL = re.compile(r"^(?P<model>.+?) \[forget (?P<kind>.+?)\]$")
REFERENCES = ("PRETRAIN", "RETRAIN", "RETRAIN+REWEIGHT", "RETRAIN+Group-DRO")


def group_rows(prep, scores_by_seed: dict[int, np.ndarray], forget_groups: list, n_top: int) -> pd.DataFrame:
    """Per group of the train split: size, mean score, share >= 0.5, share of the top ``n_top``."""
    train = prep.indices("train")
    g = prep.g[train]
    per_seed = []
    for seed, s in scores_by_seed.items():
        top = np.argsort(-s, kind="stable")[:n_top]
        for k in range(prep.n_groups):
            member = g == k
            per_seed.append(
                {
                    "seed": seed,
                    "group": k,
                    "n": int(member.sum()),
                    "mean": s[member].mean(),
                    "share_ge_0.5": 100 * (s[member] >= 0.5).mean(),
                    "share_of_top": 100 * member[top].mean(),
                }
            )
    df = pd.DataFrame(per_seed)
    rows = []
    for k, sub in df.groupby("group"):
        y, a = divmod(int(k), prep.n_attrs)
        rows.append(
            {
                "group": f"{prep.meta['classes'][y]}, {prep.meta['attrs'][a]}",
                "forget group": "yes" if [y, a] in forget_groups else "",
                "n": int(sub["n"].iloc[0]),
                **{
                    c: f"{sub[c].mean():.3f} ± {sub[c].std(ddof=0):.3f}"
                    if c == "mean"
                    else f"{sub[c].mean():.1f} ± {sub[c].std(ddof=0):.1f}"
                    for c in ("mean", "share_ge_0.5", "share_of_top")
                },
            }
        )
    return pd.DataFrame(rows)


def tow_rows(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in table.iterrows():
        m = LABEL.match(str(r["model"]))
        if m and r["ToW"] != "–":
            kind = m["kind"].replace("memorization ", "mem. ").replace(" by heldout", "")
            tow, tow_std = mean_std(r["ToW"])
            rows.append({"model": m["model"], "kind": kind, "ToW": tow, "ToW_std": tow_std})
    return pd.DataFrame(rows)


def figure(rows: pd.DataFrame, tow: pd.DataFrame, size: int, path: Path) -> None:
    """Left: each group's mean score (the forget group in red); right: ToW per method and forget set."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    means = [mean_std(v) for v in rows["mean"]]
    colors = ["tab:red" if f else "tab:gray" for f in rows["forget group"]]
    left.bar(range(len(rows)), [m for m, _ in means], yerr=[s for _, s in means], color=colors, capsize=3)
    left.set(
        xticks=range(len(rows)),
        xticklabels=[f"{g}\n(n={n})" for g, n in zip(rows["group"], rows["n"])],
        ylabel="mean held-out memorization score",
        title="Memorization by group (red: the forget group)",
    )
    left.tick_params(axis="x", labelsize=7)
    kinds = list(dict.fromkeys(tow["kind"]))
    methods = [m for m in dict.fromkeys(tow["model"]) if m not in REFERENCES]
    width = 0.8 / max(len(methods), 1)
    for i, model in enumerate(methods):
        sub = tow[tow["model"] == model].set_index("kind").reindex(kinds)
        right.bar(
            [k + i * width for k in range(len(kinds))], sub["ToW"], width, yerr=sub["ToW_std"], capsize=2, label=model
        )
    right.set(
        xticks=[k + width * (len(methods) - 1) / 2 for k in range(len(kinds))],
        xticklabels=kinds,
        ylabel="ToW vs RETRAIN (%)",
        title=f"Forget sets of {size} samples",
        ylim=(0, 100),
    )
    right.legend(fontsize=7)
    save_figure(fig, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scores", default="data/memorization", help="folder of the memorization stage's <seed>.npz")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--forget", default="data/forget", help="a group forget set (its size and groups) is read here")
    ap.add_argument("--out", default="reports/groups_memorization")
    args = ap.parse_args()
    prep = load_prepared(args.prepared)
    train = prep.indices("train")
    scores = {}
    for path in sorted(Path(args.scores).glob("*.npz")):
        name, s = load_scores(path, train)
        if name != "heldout":
            raise SystemExit(f"{path} holds {name} scores; run tools/groups_vs_memorization.sh (heldout)")
        scores[int(path.stem)] = s
    forget_files = sorted(Path(args.forget).glob("*.json"))
    if not scores or not forget_files:
        raise SystemExit(f"no scores in {args.scores} or no forget set in {args.forget}")
    fs = json.loads(forget_files[0].read_text())
    groups = fs["groups"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = group_rows(prep, scores, groups, fs["size"])
    rows.to_csv(out / "groups.csv", index=False)
    header = (
        f"# Memorization of the groups of colored_mnist's train split\n\nHeld-out scores "
        f"(Feldman & Zhang, memorization.models K, each sample held out of round(0.3 K) models), mean ± std over "
        f"seeds {sorted(scores)}; 'share of top' = the group's share of the {fs['size']} most memorized training "
        f"samples (the size of the group forget set at ratio {fs['ratio']}).\n\n"
    )
    md = to_markdown(rows)
    (out / "groups.md").write_text(header + md)
    print(header + md)

    figure(rows, tow_rows(pd.read_csv(out / "methods.csv")), fs["size"], out / "groups_vs_memorization.png")
    print(f"wrote {out / 'groups.md'}, {out / 'groups.csv'}, {out / 'groups_vs_memorization.png'}")


if __name__ == "__main__":
    main()
