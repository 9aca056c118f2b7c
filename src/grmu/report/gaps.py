"""Per-seed deltas and avg. gap against the reference model, and their summaries.

Protocol (paper §4.1, fact sheet §6): for every (ratio, seed), each model's metrics are
compared with the reference model (``eval.reference``, default RETRAIN+REWEIGHT) of the *same*
ratio and seed: ``Δ_k = |m_k − ref_k|`` and ``avg. gap = 100 − mean_k Δ_k`` over k in
{RA, UA, TA, MIA, EO, GA}; ToW and ToW-MIA (the sharp-unlearn papers' trade-off scores,
``grmu.metrics``) against the same reference. Tables then show
mean ± std over seeds (numpy ``std``, ddof = 0) of the metrics, the deltas and the gap. The
overall avg. gap of an experiment is the mean over seeds of each seed's mean over ratios.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu import GrmuError
from grmu.config import REFERENCES
from grmu.metrics import METRIC_KEYS, avg_gap, tow, tow_mia
from grmu.runtime import read_json

GOLD = "retrain_reweight"  # the group-robust paper's reference; eval.reference may choose another
MODELS = ("pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned")
LABELS = {
    "pretrain": "PRETRAIN",
    "retrain_erm": "RETRAIN",
    "retrain_reweight": "RETRAIN+REWEIGHT",
    "retrain_gdro": "RETRAIN+Group-DRO",
}
SUBSET_KEYS = ("acc_high", "acc_mid", "acc_low")  # accuracies of the memorization subsets (grmu.memorization)
EXTRA_KEYS = ("WG", "DP", "EP", "MIA_AUC", "MIA_SVC", *SUBSET_KEYS)
SUMMARY_EXTRA = ("WG", *SUBSET_KEYS)


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
                row.setdefault("MIA_SVC", float("nan"))  # evaluations made before grmu had it
                rows.append(row)
    return pd.DataFrame(rows)


def present(df: pd.DataFrame, keys) -> list[str]:
    """The ``keys`` that the evaluations measured (a dataset without group attributes has no
    EO/DP/EP, and no GA for a random forget set)."""
    return [k for k in keys if k in df.columns and df[k].notna().any()]


def curve_metric(df: pd.DataFrame) -> str:
    """GA, the metric of the paper's Fig. 2/4, or UA where GA is not measured (no groups)."""
    return "GA" if present(df, ["GA"]) else "UA"


def add_gaps(df: pd.DataFrame, reference: str = GOLD) -> pd.DataFrame:
    """Add per-seed Δ columns, avg_gap, ToW and ToW_MIA against the ``reference`` model
    (default RETRAIN+REWEIGHT) of the same (ratio, seed)."""
    if reference not in REFERENCES:
        raise GrmuError(f"eval.reference '{reference}' is unknown; valid: {', '.join(REFERENCES)}")
    if reference not in set(df["model"]):
        raise GrmuError(f"avg. gap needs {LABELS[reference]} evaluations (model '{reference}')")
    gold = df[df["model"] == reference].set_index(["ratio", "seed"])
    keys = present(df, METRIC_KEYS)
    out = []
    for _, row in df.iterrows():
        ref = gold.loc[(row["ratio"], row["seed"])]
        row = row.copy()
        for k in keys:
            row[f"d_{k}"] = abs(row[k] - ref[k])
        row["avg_gap"] = avg_gap(row, ref, keys)
        row["ToW"] = tow(row, ref)
        row["ToW_MIA"] = tow_mia(row, ref)
        out.append(row)
    return pd.DataFrame(out)


def overall_gap(df: pd.DataFrame, model: str = "unlearned") -> tuple[float, float]:
    """Mean ± std over seeds of each seed's avg. gap averaged over ratios."""
    per_seed = df[df["model"] == model].groupby("seed")["avg_gap"].mean()
    return float(per_seed.mean()), float(per_seed.std(ddof=0))


def summary_json(
    df: pd.DataFrame,
    method: str,
    reweight: bool,
    reference: str = GOLD,
    pretrain: str = "plain",
    unlearn: str = "plain",
    dataset: str | None = None,
) -> dict:
    """Compact metrics for ``dvc metrics show`` / ``dvc exp show``; ``pretrain`` / ``unlearn``
    label the SAM settings of training and unlearning (``grmu.sam.sam_tag``) for ``grmu report``."""
    gap, gap_std = overall_gap(df)
    out = {
        "dataset": dataset,
        "method": method,
        "reweight": reweight,
        "pretrain": pretrain,
        "unlearn_sam": unlearn,
        "reference": reference,
        "avg_gap": round(gap, 3),
        "avg_gap_std": round(gap_std, 3),
    }
    for key in ("ToW", "ToW_MIA"):
        per_seed = df[df["model"] == "unlearned"].groupby("seed")[key].mean()
        out[key], out[f"{key}_std"] = round(float(per_seed.mean()), 3), round(float(per_seed.std(ddof=0)), 3)
    for r in sorted(df["ratio"].unique()):
        block = {}
        for model in [m for m in MODELS if m in set(df["model"])]:
            sub = df[(df["ratio"] == r) & (df["model"] == model)]
            block[model] = {k: round(float(sub[k].mean()), 3) for k in present(df, METRIC_KEYS + SUMMARY_EXTRA)}
            if model != reference:
                for key in ("avg_gap", "ToW", "ToW_MIA"):
                    block[model][key] = round(float(sub[key].mean()), 3)
        out[f"r{fmt_ratio(r)}"] = block
    return out
