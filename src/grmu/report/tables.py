"""Tables and plot data of one experiment (``metrics/``, ``plots/``) and of several (``grmu report``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from grmu.metrics import METRIC_KEYS
from grmu.report.gaps import EXTRA_KEYS, GOLD, MODELS, curve_metric, fmt_ratio, model_label, present
from grmu.runtime import read_json


def _pm(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{np.nanmean(v):.1f} ± {np.nanstd(v):.1f}"


def labels_for(method: str, reweight: bool) -> dict:
    """Display label of each model of one experiment, in table order."""
    return {m: model_label(m, method, reweight) for m in MODELS}


def summary_table(df: pd.DataFrame, labels: dict, reference: str = GOLD) -> pd.DataFrame:
    """Paper-style table: one row per (ratio, model): metrics mean ± std, Δ, avg. gap, ToW and
    ToW-MIA against ``reference``.

    ``labels`` maps the ``model`` values to show, in row order, to their display names."""
    rows = []
    for r in sorted(df["ratio"].unique()):
        for model in [m for m in labels if m in set(df["model"])]:
            sub = df[(df["ratio"] == r) & (df["model"] == model)]
            row = {"ratio": fmt_ratio(r), "model": labels[model], "seeds": len(sub)}
            for k in present(df, METRIC_KEYS + EXTRA_KEYS):
                row[k] = _pm(sub[k])
            is_ref = model.split("@")[0] == reference  # grmu report keys references per pretraining
            for k in present(df, METRIC_KEYS):
                row[f"Δ{k}"] = "–" if is_ref else f"{sub[f'd_{k}'].mean():.1f}"
            row["avg. gap"] = "–" if is_ref else _pm(sub["avg_gap"])
            row["ToW"] = "–" if is_ref else _pm(sub["ToW"])
            row["ToW-MIA"] = "–" if is_ref else _pm(sub["ToW_MIA"])
            rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


ENV_KEYS = ("grmu", "torch", "torchvision", "dvc", "python", "device")


def environments(eval_dir: str | Path, ratios, seeds, models=MODELS) -> dict:
    """The versions and devices that trained and evaluated the models, each as a sorted,
    comma-separated list of the distinct values (one value when every run agrees), so a
    teammate can tell why two summaries differ."""
    seen = {k: set() for k in ENV_KEYS}
    for model in models:
        for r in ratios:
            for s in seeds:
                d = read_json(Path(eval_dir) / model / f"{r}-{s}.json", "evaluation")
                for run in (d.get("run") or {}, (d.get("trained") or {}).get("run") or {}):
                    for k in ENV_KEYS:
                        if run.get(k) is not None:
                            seen[k].add(str(run[k]))
    return {k: ", ".join(sorted(v)) for k, v in seen.items() if v}


def ga_vs_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Wide table: ratio, then the mean GA (``curve_metric``) over seeds of each model (the
    paper's Fig. 2/4 view)."""
    wide = df.groupby(["ratio", "model"])[curve_metric(df)].mean().unstack("model")
    wide = wide[[m for m in MODELS if m in wide.columns]]
    return wide.reset_index().round(3)


def group_acc_long(df: pd.DataFrame, group_names: list[str], method: str, reweight: bool) -> pd.DataFrame:
    """Per-group test accuracy of each model at the largest ratio (mean over seeds), long format."""
    r = df["ratio"].max()
    rows = []
    for model in [m for m in MODELS if m in set(df["model"])]:
        accs = np.nanmean(
            np.array(df[(df["ratio"] == r) & (df["model"] == model)]["group_acc"].tolist(), dtype=float), 0
        )
        for gi, acc in enumerate(accs):
            rows.append(
                {
                    "group": f"{group_names[gi]} | {model_label(model, method, reweight)}",
                    "accuracy": round(float(acc), 3),
                }
            )
    return pd.DataFrame(rows)


def read_curve(live_dir: Path, metric: str) -> pd.Series | None:
    f = live_dir / "plots" / "metrics" / f"{metric}.tsv"
    if not f.exists():
        return None
    s = pd.read_csv(f, sep="\t")
    return s.set_index("step")[metric]


def curves(logs_dir: str | Path, ratio, seed, metric: str, models) -> pd.DataFrame:
    """Per-epoch ``metric`` of each model's training run at (ratio, seed), wide by model."""
    cols = {}
    for model in models:
        d = Path(logs_dir) / model / str(seed) / ("" if model == "pretrain" else str(ratio))
        s = read_curve(d, metric)
        if s is not None:
            cols[model] = s
    if not cols:
        return pd.DataFrame()
    out = pd.DataFrame(cols)
    out.index.name = "epoch"
    return out.reset_index().round(4)
