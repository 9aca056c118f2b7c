"""The paper's published numbers next to a run's: ``grmu report --paper``.

``paper_tables.csv`` holds the paper's appendix Tables 5-16 (mean ± std over 3 seeds, per
dataset, forget groups, ratio, model, REWEIGHT and metric; extracted from the paper's text by
``tools/paper_tables.py``). ``compare_to_paper`` puts a run's per-seed results (the
``aggregate`` stage's ``metrics/per_seed.csv``) next to them: for each ratio the paper reports,
the references (PRETRAIN, RETRAIN, RETRAIN + REWEIGHT) and the unlearned model (when the paper
reports the run's method with the run's REWEIGHT setting), per metric: ours (mean ± std over
seeds, ddof 0), the paper's, and ours − the paper's.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from grmu import GrmuError

PAPER_CSV = Path(__file__).with_name("paper_tables.csv")
# sha256 of paper_tables.csv (line ends as "\n"): a truncated or edited table would print
# another paper number as the paper's, so any other content is refused. After
# `python tools/paper_tables.py` rewrites the table, put the hash it prints here.
PAPER_SHA256 = "5ae6c1429586ccaaa866e8c879117d6cdd70683bd06cf08ace0543908b32855b"
METRICS = ("RA", "UA", "TA", "MIA", "EO", "GA", "avg_gap")
LABELS = {"pretrain": "PRETRAIN", "retrain_erm": "RETRAIN", "retrain_reweight": "RETRAIN+REWEIGHT"}
GROUPS = {None: 1, 3: 9, 5: 25}  # forget.multi_group -> the paper's number of forget groups


def table_sha256(data: bytes) -> str:
    """The hash ``PAPER_SHA256`` records: of the table's bytes with line ends as ``\n``."""
    import hashlib

    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


@lru_cache(maxsize=1)
def paper_table() -> pd.DataFrame:
    """The paper's tables, refused in one line unless ``PAPER_CSV`` is the file extracted from
    the paper (``PAPER_SHA256``)."""
    import io

    try:
        data = PAPER_CSV.read_bytes()
    except OSError as e:
        raise GrmuError(f"cannot read the paper's tables {PAPER_CSV}: {e.strerror or e}; reinstall grmu") from e
    if table_sha256(data) != PAPER_SHA256:
        raise GrmuError(
            f"the paper's tables {PAPER_CSV} are damaged or edited (sha256 {table_sha256(data)[:12]}…, expected "
            f"{PAPER_SHA256[:12]}…): restore the file (`git checkout` it, reinstall grmu, or rerun "
            "`python tools/paper_tables.py`)"
        )
    return pd.read_csv(io.BytesIO(data.replace(b"\r\n", b"\n")))


def compare_to_paper(
    per_seed: pd.DataFrame, dataset: str, method: str, reweight: bool, groups: int = 1
) -> pd.DataFrame:
    """One row per (ratio, model, metric) that both report: ``ours``, ``ours_std``, ``paper``,
    ``paper_std`` and ``diff`` (ours − paper). ``model`` is grmu's name (``unlearned`` for the
    run's method)."""
    paper = paper_table()
    known = paper[["dataset", "groups"]].drop_duplicates().itertuples(index=False)
    if (dataset, groups) not in {(d, g) for d, g in known}:
        have = ", ".join(
            f"{d} ({g} group{'s' if g > 1 else ''})"
            for d, g in paper[["dataset", "groups"]].drop_duplicates().itertuples(index=False)
        )
        raise GrmuError(f"the paper reports no results for {dataset} with {groups} forget group(s); it reports: {have}")
    paper = paper[(paper["dataset"] == dataset) & (paper["groups"] == groups)]
    pairs = [(m, m, m == "retrain_reweight") for m in LABELS] + [("unlearned", method, bool(reweight))]
    rows = []
    for ratio in sorted(per_seed["ratio"].unique()):
        at = paper[np.isclose(paper["ratio"], ratio)]
        for ours_model, paper_model, paper_rw in pairs:
            ours = per_seed[np.isclose(per_seed["ratio"], ratio) & (per_seed["model"] == ours_model)]
            theirs = at[(at["model"] == paper_model) & (at["reweight"] == paper_rw)].set_index("metric")
            for metric in METRICS:
                if ours.empty or metric not in theirs.index or metric not in ours or ours[metric].isna().all():
                    continue
                values = ours[metric].to_numpy(dtype=float)
                mean, p = float(np.nanmean(values)), theirs.loc[metric]
                rows.append(
                    {
                        "ratio": float(ratio),
                        "model": ours_model,
                        "metric": metric,
                        "ours": mean,
                        "ours_std": float(np.nanstd(values)),
                        "paper": float(p["mean"]),
                        "paper_std": float(p["std"]),
                        "diff": mean - float(p["mean"]),
                    }
                )
    return pd.DataFrame(rows, columns=["ratio", "model", "metric", "ours", "ours_std", "paper", "paper_std", "diff"])


def paper_markdown(cmp: pd.DataFrame, dataset: str, method: str, reweight: bool, groups: int = 1) -> str:
    """``cmp`` as one markdown table per ratio: a row per model, a cell per metric holding
    ``ours / paper (ours − paper)``."""
    label = {**LABELS, "unlearned": f"{method.upper()}{'+REWEIGHT' if reweight else ''}"}
    lines = [
        f"{dataset} ({groups} forget group{'s' if groups > 1 else ''}): ours / the paper's (ours − paper), "
        "means over seeds"
    ]
    if cmp.empty:
        return "\n".join(lines + ["(no ratio of this run is in the paper's tables)"])
    metrics = [m for m in METRICS if m in set(cmp["metric"])]
    for ratio, at in cmp.groupby("ratio"):
        lines += [
            "",
            f"ratio {ratio:g}",
            "",
            "| model | " + " | ".join(m.replace("_", ". ") for m in metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for model in [m for m in label if m in set(at["model"])]:
            cells = at[at["model"] == model].set_index("metric")
            lines.append(
                f"| {label[model]} | "
                + " | ".join(
                    f"{cells.loc[m, 'ours']:.1f} / {cells.loc[m, 'paper']:.1f} ({cells.loc[m, 'diff']:+.1f})"
                    if m in cells.index
                    else "–"
                    for m in metrics
                )
                + " |"
            )
    if method not in set(paper_table()["model"]) or "unlearned" not in set(cmp["model"]):
        lines += [
            "",
            f"(the paper reports no {label['unlearned']}; its methods: l1_sparse, salun, scrub, miu, "
            "each with and without REWEIGHT)",
        ]
    return "\n".join(lines)


def report_paper(repo: str | Path = ".") -> str:
    """The comparison for the results in ``repo``'s workspace (``metrics/per_seed.csv`` and
    ``metrics/summary.json`` of the last ``dvc repro`` / ``dvc exp run``, ``params.yaml``)."""
    import yaml

    from grmu.report.results import read_per_seed, read_summary

    repo = Path(repo)
    paths = [repo / "metrics/per_seed.csv", repo / "metrics/summary.json", repo / "params.yaml"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise GrmuError(f"no results to compare: {', '.join(missing)} missing (run `dvc repro` or `dvc exp run` first)")
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise GrmuError.wrap(f"cannot read {path}", e) from e
    per_seed = read_per_seed(texts[0], str(paths[0]))
    summary = read_summary(texts[1], str(paths[1]), required=("dataset", "method", "reweight"))
    try:
        params = yaml.safe_load(texts[2]) or {}
    except yaml.YAMLError as e:
        raise GrmuError.wrap(f"{paths[2]} is not valid YAML", e) from e
    forget = (params.get("forget") if isinstance(params, dict) else None) or {}
    if not isinstance(forget, dict):
        raise GrmuError(f"{paths[2]}: 'forget' must be a mapping, got {forget!r:.60}")
    notes = []
    if summary.get("forget", "group") != "group" or forget.get("groups") is not None:
        notes.append("note: this run's forget set is not the paper's (forget.kind group, default groups)")
    if summary.get("reference", "retrain_reweight") != "retrain_reweight":
        notes.append(f"note: avg. gap is against {summary['reference']} here, RETRAIN+REWEIGHT in the paper")
    multi = forget.get("multi_group")
    if not (multi is None or (isinstance(multi, int) and multi in GROUPS)):
        raise GrmuError(f"{paths[2]}: forget.multi_group {multi!r:.40} is invalid; valid: null, 3, 5")
    groups = GROUPS[multi]
    cmp = compare_to_paper(per_seed, summary["dataset"], summary["method"], summary["reweight"], groups)
    return "\n".join([paper_markdown(cmp, summary["dataset"], summary["method"], summary["reweight"], groups), *notes])
