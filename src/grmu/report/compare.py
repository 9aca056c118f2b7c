"""Comparing experiments: `grmu report` over every committed result and DVC experiment."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu import GrmuError
from grmu.report.gaps import GOLD, LABELS, MODELS, model_label
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
        out.append({"name": row.get("Experiment") or rev, "rev": rev, "dataset": s.get("dataset"), "method": s["method"],
                    "reweight": bool(s["reweight"]), "pretrain": s.get("pretrain", "plain"),
                    "unlearn_sam": s.get("unlearn_sam", "plain"), "reference": s.get("reference", GOLD),
                    "per_seed": pd.read_csv(io.StringIO(per_seed))})
    return out


def compare(experiments: list[dict]) -> tuple[pd.DataFrame, dict]:
    """One frame with the reference models and the unlearned model of every experiment, keyed
    ``exp:<name>``; and the labels in table order. Experiments are grouped by their pretraining
    (``pretrain``: plain or a SAM setting): each group's reference models come from its first
    experiment, and when the experiments do not all share plain pretraining every row says
    which pretraining it used. Two experiments with the same label keep only the first (the
    newest)."""
    if not experiments:
        raise GrmuError("no results to report: run `dvc repro` and commit, or `dvc exp run` (or `dvc exp pull`)")
    tags = list(dict.fromkeys(exp.get("pretrain", "plain") for exp in experiments))
    tagged = tags != ["plain"]
    frames, labels = [], {}
    for tag in tags:
        first = next(exp for exp in experiments if exp.get("pretrain", "plain") == tag)["per_seed"]
        refs = first[first["model"] != "unlearned"].copy()
        if tagged:
            refs["model"] = refs["model"] + f"@{tag}"
        frames.append(refs)
        for m in MODELS:
            if m != "unlearned":
                labels[f"{m}@{tag}" if tagged else m] = LABELS[m] + (f" [pretrain {tag}]" if tagged else "")
    for exp in experiments:
        label = model_label("unlearned", exp["method"], exp["reweight"])
        if exp.get("unlearn_sam", "plain") != "plain":
            label += f" ({exp['unlearn_sam']})"
        if tagged:
            label += f" [pretrain {exp.get('pretrain', 'plain')}]"
        if label in labels.values():
            continue
        unl = exp["per_seed"][exp["per_seed"]["model"] == "unlearned"].copy()
        unl["model"] = f"exp:{exp['name']}"
        frames.append(unl)
        labels[unl["model"].iloc[0]] = label
    return pd.concat(frames, ignore_index=True), labels


def of_dataset(experiments: list[dict], dataset: str | None) -> list[dict]:
    """The experiments on ``dataset`` (default: the newest experiment's), so that one report
    never compares models of different datasets."""
    if not experiments:
        return experiments
    want = dataset or experiments[0].get("dataset")
    chosen = [e for e in experiments if e.get("dataset") == want]
    if not chosen:
        seen = sorted({str(e.get("dataset")) for e in experiments})
        raise GrmuError(f"no results on dataset '{want}'; the results are on: {', '.join(seen)}")
    return chosen


def report(repo: str | Path, out_dir: str | Path, num: int = 1, dataset: str | None = None) -> str:
    """Write ``methods.md``, ``methods.csv``, ``avg_gap_vs_ratio.{csv,png}`` into ``out_dir``;
    return the Markdown table."""
    experiments = of_dataset(load_experiments(repo, num), dataset)
    df, labels = compare(experiments)
    reference = experiments[0]["reference"]
    table = summary_table(df, labels, reference)
    out_dir = Path(out_dir)
    md = ("# Unlearning methods vs references\n\nMean ± std over seeds; Δ, avg. gap, ToW and ToW-MIA against "
          f"{LABELS[reference]} of the same seed, ratio and pretraining.\n\n" + to_markdown(table))
    write_text(out_dir / "methods.md", md)
    write_text(out_dir / "methods.csv", table.to_csv(index=False))
    wide = plot_gap_vs_ratio(df, labels, out_dir / "avg_gap_vs_ratio.png")
    write_text(out_dir / "avg_gap_vs_ratio.csv", wide.to_csv(index=False))
    return md
