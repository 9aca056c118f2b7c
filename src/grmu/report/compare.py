"""Comparing experiments: `grmu report` over every committed result and DVC experiment."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu import GrmuError
from grmu.report.gitread import git_show
from grmu.report.gaps import GOLD, LABELS, MODELS, model_label
from grmu.report.audit import load_audits, write_audit_report
from grmu.report.plots import plot_gap_vs_ratio
from grmu.report.tables import summary_table, to_markdown
from grmu.runtime import write_text


def load_experiments(repo: str | Path = ".", num: int = 1) -> list[dict]:
    """Every committed result of the repo: the baseline commit(s) and each DVC experiment
    (run here or pulled with ``dvc exp pull``), as dicts with ``name``, ``rev``, ``method``,
    ``reweight`` and ``per_seed`` (the experiment's ``metrics/per_seed.csv``)."""
    import dvc.api

    from grmu.report.results import read_per_seed, read_summary

    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        raise GrmuError(f"{repo.resolve()} is not a DVC repository (no .dvc/ folder); pass --repo <grmu checkout>")
    out = []
    for row in dvc.api.exp_show(repo=str(repo), num=num):
        rev = row.get("rev")
        if rev in (None, "workspace"):
            continue
        summary, per_seed = git_show(repo, rev, "metrics/summary.json"), git_show(repo, rev, "metrics/per_seed.csv")
        if summary is None or per_seed is None:
            continue  # a commit without results
        name = row.get("Experiment") or rev
        where = f"of {name}" if name == rev else f"of experiment {name} ({rev})"
        s = read_summary(summary, f"metrics/summary.json {where}")
        out.append(
            {
                "name": name,
                "rev": rev,
                "dataset": s.get("dataset"),
                "method": s["method"],
                "reweight": bool(s["reweight"]),
                "pretrain": s.get("pretrain", "plain"),
                "unlearn_sam": s.get("unlearn_sam", "plain"),
                "reference": s.get("reference", GOLD),
                "forget": s.get("forget", "group"),
                "per_seed": read_per_seed(per_seed, f"metrics/per_seed.csv {where}"),
            }
        )
    return out


def setting(exp: dict) -> tuple[str, str]:
    """What an experiment's reference models depend on besides the dataset: its pretraining
    (plain or a SAM setting) and its kind of forget set."""
    return exp.get("pretrain", "plain"), exp.get("forget", "group")


def compare(experiments: list[dict]) -> tuple[pd.DataFrame, dict]:
    """One frame with the reference models and the unlearned model of every experiment, keyed
    ``exp:<name>``; and the labels in table order. Experiments are grouped by their setting
    (pretraining: plain or a SAM setting; the kind of forget set: group, random or a
    memorization level): each group's reference models come from its first experiment, and
    every row names the parts of the setting that are not the same for all (the pretraining
    also when all share one SAM setting). Two experiments with the same label keep only the
    first (the newest)."""
    if not experiments:
        raise GrmuError("no results to report: run `dvc repro` and commit, or `dvc exp run` (or `dvc exp pull`)")
    settings = list(dict.fromkeys(setting(exp) for exp in experiments))
    show_pretrain = [s[0] for s in settings] != ["plain"] * len(settings)
    show_forget = len({s[1] for s in settings}) > 1

    def parts(s: tuple[str, str]) -> list[tuple[str, str]]:
        return ([("pretrain", s[0])] if show_pretrain else []) + ([("forget", s[1])] if show_forget else [])

    def key(s: tuple[str, str]) -> str:  # suffix of the reference rows' model keys
        return "|".join(v for _, v in parts(s))

    def tag(s: tuple[str, str]) -> str:  # what the rows' labels say
        return ", ".join(f"{name} {v}" for name, v in parts(s))

    frames, labels = [], {}
    for s in settings:
        first = next(exp for exp in experiments if setting(exp) == s)["per_seed"]
        refs = first[first["model"] != "unlearned"].copy()
        if key(s):
            refs["model"] = refs["model"] + f"@{key(s)}"
        frames.append(refs)
        for m in MODELS:
            if m != "unlearned":
                labels[f"{m}@{key(s)}" if key(s) else m] = LABELS[m] + (f" [{tag(s)}]" if tag(s) else "")
    for exp in experiments:
        label = model_label("unlearned", exp["method"], exp["reweight"])
        if exp.get("unlearn_sam", "plain") != "plain":
            label += f" ({exp['unlearn_sam']})"
        if tag(setting(exp)):
            label += f" [{tag(setting(exp))}]"
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


def named(experiments: list[dict], patterns: list[str] | None) -> list[dict]:
    """The experiments whose name matches one of the shell-style ``patterns`` (all if none)."""
    from fnmatch import fnmatchcase

    if not patterns:
        return experiments
    chosen = [e for e in experiments if any(fnmatchcase(str(e["name"]), p) for p in patterns)]
    if not chosen:
        seen = ", ".join(str(e["name"]) for e in experiments) or "none"
        raise GrmuError(f"no experiment matches --exp {' '.join(patterns)}; the experiments are: {seen}")
    return chosen


def report(
    repo: str | Path, out_dir: str | Path, num: int = 1, dataset: str | None = None, names: list[str] | None = None
) -> str:
    """Write ``methods.md``, ``methods.csv``, ``avg_gap_vs_ratio.{csv,png}`` into ``out_dir`` (and,
    for experiments with forgetting audits, ``audit.md``, ``audit.csv``, ``audit_eps.png``);
    return the Markdown tables. ``names``: only the experiments matching these globs."""
    experiments = of_dataset(named(load_experiments(repo, num), names), dataset)
    df, labels = compare(experiments)
    reference = experiments[0]["reference"]
    table = summary_table(df, labels, reference)
    out_dir = Path(out_dir)
    md = (
        "# Unlearning methods vs references\n\nMean ± std over seeds; Δ, avg. gap, ToW and ToW-MIA against "
        f"{LABELS[reference]} of the same seed, ratio and pretraining.\n\n" + to_markdown(table)
    )
    write_text(out_dir / "methods.md", md)
    write_text(out_dir / "methods.csv", table.to_csv(index=False))
    wide = plot_gap_vs_ratio(df, labels, out_dir / "avg_gap_vs_ratio.png")
    write_text(out_dir / "avg_gap_vs_ratio.csv", wide.to_csv(index=False))
    audits = load_audits(repo, experiments)
    if audits:  # the experiments run with audit.ratios (docs/audit.md)
        audit_md = write_audit_report(audits, out_dir)
        md += "\n" + audit_md
    return md
