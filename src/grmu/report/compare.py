"""Comparing experiments: `grmu report` over every committed result and DVC experiment."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu import GrmuError
from grmu.report.gaps import LABELS, MODELS, model_label
from grmu.report.plots import plot_gap_vs_ratio
from grmu.report.tables import summary_table, to_markdown
from grmu.runtime import write_text


def _git_show(repo: Path, rev: str, path: str) -> str | None:
    import subprocess

    res = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else None


def load_experiments(repo: str | Path = ".", num: int = 1) -> list[dict]:
    """Every committed result of the repo: the baseline commit(s) and each DVC experiment
    (run here or pulled with ``dvc exp pull``), as dicts with ``name``, ``rev``, ``method``,
    ``reweight`` and ``per_seed`` (the experiment's ``metrics/per_seed.csv``)."""
    import io
    import json

    import dvc.api

    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        raise GrmuError(f"{repo.resolve()} is not a DVC repository (no .dvc/ folder); pass --repo <grmu checkout>")
    out = []
    for row in dvc.api.exp_show(repo=str(repo), num=num):
        rev = row.get("rev")
        if rev in (None, "workspace"):
            continue
        summary, per_seed = _git_show(repo, rev, "metrics/summary.json"), _git_show(repo, rev, "metrics/per_seed.csv")
        if summary is None or per_seed is None:
            continue  # a commit without results
        s = json.loads(summary)
        out.append({"name": row.get("Experiment") or rev, "rev": rev, "method": s["method"],
                    "reweight": bool(s["reweight"]), "per_seed": pd.read_csv(io.StringIO(per_seed))})
    return out


def compare(experiments: list[dict]) -> tuple[pd.DataFrame, dict]:
    """One frame with the reference models (from the first experiment) and the unlearned
    model of every experiment, keyed ``exp:<name>``; and the labels in table order. Two
    experiments of the same method and REWEIGHT setting keep only the first (the newest)."""
    if not experiments:
        raise GrmuError("no results to report: run `dvc repro` and commit, or `dvc exp run` (or `dvc exp pull`)")
    first = experiments[0]["per_seed"]
    frames = [first[first["model"] != "unlearned"]]
    labels = {m: LABELS[m] for m in MODELS if m != "unlearned"}
    for exp in experiments:
        label = model_label("unlearned", exp["method"], exp["reweight"])
        if label in labels.values():
            continue
        unl = exp["per_seed"][exp["per_seed"]["model"] == "unlearned"].copy()
        unl["model"] = f"exp:{exp['name']}"
        frames.append(unl)
        labels[unl["model"].iloc[0]] = label
    return pd.concat(frames, ignore_index=True), labels


def report(repo: str | Path, out_dir: str | Path, num: int = 1) -> str:
    """Write ``methods.md``, ``methods.csv``, ``avg_gap_vs_ratio.{csv,png}`` into ``out_dir``;
    return the Markdown table."""
    df, labels = compare(load_experiments(repo, num))
    table = summary_table(df, labels)
    out_dir = Path(out_dir)
    md = ("# Unlearning methods vs references\n\nMean ± std over seeds; Δ and avg. gap against "
          "RETRAIN+REWEIGHT of the same seed and ratio.\n\n" + to_markdown(table))
    write_text(out_dir / "methods.md", md)
    write_text(out_dir / "methods.csv", table.to_csv(index=False))
    wide = plot_gap_vs_ratio(df, labels, out_dir / "avg_gap_vs_ratio.png")
    write_text(out_dir / "avg_gap_vs_ratio.csv", wide.to_csv(index=False))
    return md
