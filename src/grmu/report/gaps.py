"""Per-seed deltas and avg. gap against the reference model, and their summaries.

Protocol (paper §4.1, fact sheet §6): for every (ratio, seed), each model's metrics are
compared with RETRAIN+REWEIGHT of the *same* ratio and seed: ``Δ_k = |m_k − ref_k|`` and
``avg. gap = 100 − mean_k Δ_k`` over k in {RA, UA, TA, MIA, EO, GA}. Tables then show
mean ± std over seeds (numpy ``std``, ddof = 0) of the metrics, the deltas and the gap. The
overall avg. gap of an experiment is the mean over seeds of each seed's mean over ratios.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu import GrmuError
from grmu.metrics import METRIC_KEYS, avg_gap, tow
from grmu.runtime import read_json

GOLD = "retrain_reweight"
MODELS = ("pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned")
LABELS = {"pretrain": "PRETRAIN", "retrain_erm": "RETRAIN", "retrain_reweight": "RETRAIN+REWEIGHT",
          "retrain_gdro": "RETRAIN+Group-DRO"}
EXTRA_KEYS = ("WG", "DP", "EP", "MIA_AUC")


def model_label(model: str, method: str, reweight: bool) -> str:
    if model == "unlearned":
        return method.upper() + ("+REWEIGHT" if reweight else "")
    return LABELS[model]


def fmt_ratio(r) -> str:
    return f"{float(r):g}"


def collect(eval_dir: str | Path, ratios, seeds, models=MODELS) -> pd.DataFrame:
    """One row per (model, ratio, seed) with every scalar metric, read from the evaluate outputs."""
    rows = []
    for model in models:
        for r in ratios:
            for s in seeds:
                d = read_json(Path(eval_dir) / model / f"{r}-{s}.json", "evaluation")
                row = {"model": model, "ratio": float(r), "seed": int(s)}
                row.update({k: v for k, v in d["metrics"].items() if isinstance(v, (int, float))})
                row["group_acc"] = d["metrics"]["group_acc"]
                rows.append(row)
    return pd.DataFrame(rows)


def add_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Add per-seed Δ columns, avg_gap and ToW against RETRAIN+REWEIGHT of the same (ratio, seed)."""
    if GOLD not in set(df["model"]):
        raise GrmuError("avg. gap needs RETRAIN+REWEIGHT evaluations (model 'retrain_reweight')")
    gold = df[df["model"] == GOLD].set_index(["ratio", "seed"])
    out = []
    for _, row in df.iterrows():
        ref = gold.loc[(row["ratio"], row["seed"])]
        row = row.copy()
        for k in METRIC_KEYS:
            row[f"d_{k}"] = abs(row[k] - ref[k])
        row["avg_gap"] = avg_gap(row, ref)
        row["ToW"] = tow(row, ref)
        out.append(row)
    return pd.DataFrame(out)


def overall_gap(df: pd.DataFrame, model: str = "unlearned") -> tuple[float, float]:
    """Mean ± std over seeds of each seed's avg. gap averaged over ratios."""
    per_seed = df[df["model"] == model].groupby("seed")["avg_gap"].mean()
    return float(per_seed.mean()), float(per_seed.std(ddof=0))


def summary_json(df: pd.DataFrame, method: str, reweight: bool) -> dict:
    """Compact metrics for ``dvc metrics show`` / ``dvc exp show``."""
    gap, gap_std = overall_gap(df)
    out = {"method": method, "reweight": reweight, "avg_gap": round(gap, 3), "avg_gap_std": round(gap_std, 3)}
    for r in sorted(df["ratio"].unique()):
        block = {}
        for model in [m for m in MODELS if m in set(df["model"])]:
            sub = df[(df["ratio"] == r) & (df["model"] == model)]
            block[model] = {k: round(float(sub[k].mean()), 3) for k in METRIC_KEYS + ("WG",)}
            if model != GOLD:
                block[model]["avg_gap"] = round(float(sub["avg_gap"].mean()), 3)
        out[f"r{fmt_ratio(r)}"] = block
    return out
