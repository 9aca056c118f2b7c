"""Reading an experiment's results for ``grmu report`` (``--paper`` too): ``metrics/summary.json``
and ``metrics/per_seed.csv`` as the ``aggregate`` stage writes them, checked, so that a damaged
or hand-edited file is one line naming it and what is wrong rather than a traceback or a
table built from it."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from grmu import GrmuError
from grmu.report.gaps import MODELS
from grmu.schema import REFERENCES

RERUN = "rerun `dvc repro aggregate` (or restore the file)"
SUMMARY_TYPES = {"dataset": str, "method": str, "reweight": bool, "forget": str, "pretrain": str, "unlearn_sam": str}


def read_summary(text: str, where: str, required=("method", "reweight")) -> dict:
    """The summary (``metrics/summary.json``) in ``text``, read from ``where``: a JSON object
    with the ``required`` keys; each of ``SUMMARY_TYPES`` that is present of its type, and
    ``reference`` one of ``grmu.schema.REFERENCES``."""
    try:
        summary = json.loads(text)
    except ValueError as e:
        raise GrmuError.wrap(f"damaged results summary {where}: not valid JSON; {RERUN}", e) from e
    if not isinstance(summary, dict):
        raise GrmuError(f"damaged results summary {where}: expected a JSON object, got {summary!r:.60}; {RERUN}")
    for key in required:
        if key not in summary:
            raise GrmuError(f"damaged results summary {where}: it lacks the key '{key}'; {RERUN}")
    for key, kind in SUMMARY_TYPES.items():
        if key in summary and not isinstance(summary[key], kind):
            raise GrmuError(
                f"damaged results summary {where}: '{key}' must be a {'boolean' if kind is bool else 'string'}, "
                f"got {summary[key]!r:.60}; {RERUN}"
            )
    if "reference" in summary and summary["reference"] not in REFERENCES:
        raise GrmuError(
            f"damaged results summary {where}: 'reference' {summary['reference']!r:.60} is unknown "
            f"(valid: {', '.join(REFERENCES)}); {RERUN}"
        )
    return summary


def read_per_seed(text: str, where: str) -> pd.DataFrame:
    """The per-seed results (``metrics/per_seed.csv``) in ``text``, read from ``where``: the
    columns ``model`` (grmu's model names), ``ratio`` (in (0, 1]), ``seed`` and the metrics, all
    numbers (NaN for a metric not measured, never infinite), at least one row."""
    try:
        df = pd.read_csv(io.StringIO(text))
    except Exception as e:  # pandas raises many types for a damaged table
        raise GrmuError.wrap(f"damaged per-seed results {where}", e) from e
    missing = [c for c in ("model", "ratio", "seed") if c not in df.columns]
    if missing or df.empty:
        what = f"it lacks the column(s) {', '.join(missing)}" if missing else "it has no rows"
        raise GrmuError(f"damaged per-seed results {where}: {what}; {RERUN}")
    unknown = sorted(set(df["model"].astype(str)) - set(MODELS))
    if unknown:
        raise GrmuError(
            f"damaged per-seed results {where}: unknown model {unknown[0]!r:.40} (valid: {', '.join(MODELS)}); {RERUN}"
        )
    for col in df.columns.drop("model"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = (values.isna() & df[col].notna()) | np.isinf(values)
        if bad.any():
            raise GrmuError(
                f"damaged per-seed results {where}: column {col} holds {df[col][bad].iloc[0]!r:.40}, not a "
                f"finite number; {RERUN}"
            )
        df[col] = values
    ratios = df["ratio"]
    if ratios.isna().any() or ((ratios <= 0) | (ratios > 1)).any():
        raise GrmuError(f"damaged per-seed results {where}: a ratio outside (0, 1] or missing; {RERUN}")
    return df
