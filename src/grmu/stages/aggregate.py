"""Stage `aggregate`: per-seed deltas, avg. gap, ToW and ToW-MIA against the reference model
(`eval.reference`, default RETRAIN+REWEIGHT), and this
experiment's results: metrics/summary.json, metrics/table.{md,csv}, metrics/per_seed.csv and
the plot data and figure in plots/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu.memorization import resolve_score
from grmu.prepared import group_names
from grmu.report.gaps import add_gaps, collect, model_label, summary_json
from grmu.report.plots import plot_ga
from grmu.report.tables import curves, environments, ga_vs_ratio, group_acc_long, labels_for, summary_table, to_markdown
from grmu.runtime import read_json, write_json, write_text
from grmu.sam import sam_tag
from grmu.splits import forget_groups


def unlearn_settings(eval_dir, ratios, seeds) -> dict:
    """The resolved ``unlearn`` settings of this experiment, as the unlearned checkpoint recorded them."""
    return read_json(Path(eval_dir) / "unlearned" / f"{ratios[0]}-{seeds[0]}.json", "evaluation")["trained"].get(
        "unlearn", {}
    )


def forget_tag(params: dict) -> str:
    """The kind of forget set, for ``grmu report`` (each kind has its own references):
    ``group``, ``random``, or ``memorization <level> by <score>``."""
    kind = params["forget"]["kind"]
    if kind != "memorization":
        return kind
    return f"memorization {params['forget']['level']} by {resolve_score(params['memorization']['score'], kind)}"


def run(params: dict, eval_dir, logs_dir, prepared_meta: dict, metrics_dir, plots_dir) -> pd.DataFrame:
    method, reweight = params["method"], params["reweight"]
    ratios, seeds = params["ratios"], params["seeds"]
    reference = params["eval"]["reference"]
    df = add_gaps(collect(eval_dir, ratios, seeds), reference)
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    table = summary_table(df, labels_for(method, reweight), reference)
    header = (
        f"# {prepared_meta['dataset']}: {model_label('unlearned', method, reweight)} vs references\n\n"
        f"Mean ± std over seeds {list(seeds)}; Δ, avg. gap, ToW and ToW-MIA against "
        f"{model_label(reference, method, reweight)} of the same seed and ratio. "
        f"Forget groups: {forget_groups(params['forget'], prepared_meta)}.\n\n"
    )
    write_text(metrics_dir / "table.md", header + to_markdown(table))
    with_paths = [(metrics_dir / "table.csv", table), (metrics_dir / "per_seed.csv", df.drop(columns=["group_acc"]))]
    for path, frame in with_paths:
        write_text(path, frame.to_csv(index=False))
    write_json(
        metrics_dir / "summary.json",
        {
            **summary_json(
                df,
                method,
                reweight,
                reference,
                sam_tag(params["train"]["sam"]),
                sam_tag(unlearn_settings(eval_dir, ratios, seeds).get("sam")),
                prepared_meta["dataset"],
            ),
            "forget": forget_tag(params),
            "env": environments(eval_dir, ratios, seeds),
        },
    )

    names = group_names(prepared_meta)
    wide = ga_vs_ratio(df)
    write_text(plots_dir / "ga_vs_ratio.csv", wide.to_csv(index=False))
    write_text(plots_dir / "group_acc.csv", group_acc_long(df, names, method, reweight).to_csv(index=False))
    ref_models = ["pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro"]
    r_max, s0 = max(ratios), seeds[0]
    write_text(
        plots_dir / "curves_reference.csv", curves(logs_dir, r_max, s0, "val_acc", ref_models).to_csv(index=False)
    )
    unl = pd.DataFrame()
    for metric in ("val_acc", "forget_acc"):
        c = curves(logs_dir, r_max, s0, metric, ["unlearned"])
        if not c.empty:
            unl = (
                c.rename(columns={"unlearned": metric})
                if unl.empty
                else unl.merge(c.rename(columns={"unlearned": metric}), on="epoch")
            )
    write_text(plots_dir / "curves_unlearn.csv", unl.to_csv(index=False))
    plot_ga(
        wide,
        df,
        plots_dir / "ga_vs_ratio.png",
        f"{prepared_meta['dataset']}: GA vs unlearning ratio",
        model_label("unlearned", method, reweight),
    )
    return df
