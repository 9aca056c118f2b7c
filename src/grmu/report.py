"""Aggregation: per-seed deltas against RETRAIN+REWEIGHT, avg. gap, tables and plot data.

Protocol (paper §4.1, fact sheet §6): for every (ratio, seed), each model's metrics are
compared with RETRAIN+REWEIGHT of the *same* ratio and seed: ``Δ_k = |m_k − ref_k|`` and
``avg. gap = 100 − mean_k Δ_k`` over k in {RA, UA, TA, MIA, EO, GA}. Tables then show
mean ± std over seeds (numpy ``std``, ddof = 0) of the metrics, the deltas and the gap. The
overall avg. gap of an experiment is the mean over seeds of each seed's mean over ratios.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from grmu import GrmuError
from grmu.metrics import METRIC_KEYS, avg_gap, tow
from grmu.runtime import read_json, write_json, write_text
from grmu.splits import forget_groups

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


def _pm(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{np.nanmean(v):.1f} ± {np.nanstd(v):.1f}"


def labels_for(method: str, reweight: bool) -> dict:
    """Display label of each model of one experiment, in table order."""
    return {m: model_label(m, method, reweight) for m in MODELS}


def summary_table(df: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """Paper-style table: one row per (ratio, model): metrics mean ± std, Δ and avg. gap.

    ``labels`` maps the ``model`` values to show, in row order, to their display names."""
    rows = []
    for r in sorted(df["ratio"].unique()):
        for model in [m for m in labels if m in set(df["model"])]:
            sub = df[(df["ratio"] == r) & (df["model"] == model)]
            row = {"ratio": fmt_ratio(r), "model": labels[model], "seeds": len(sub)}
            for k in METRIC_KEYS + EXTRA_KEYS:
                row[k] = _pm(sub[k])
            for k in METRIC_KEYS:
                row[f"Δ{k}"] = "–" if model == GOLD else f"{sub[f'd_{k}'].mean():.1f}"
            row["avg. gap"] = "–" if model == GOLD else _pm(sub["avg_gap"])
            rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def overall_gap(df: pd.DataFrame, model: str = "unlearned") -> tuple[float, float]:
    """Mean ± std over seeds of each seed's avg. gap averaged over ratios."""
    per_seed = df[df["model"] == model].groupby("seed")["avg_gap"].mean()
    return float(per_seed.mean()), float(per_seed.std(ddof=0))


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


def ga_vs_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Wide table: ratio, then the mean GA over seeds of each model (the paper's Fig. 2/4 view)."""
    wide = df.groupby(["ratio", "model"])["GA"].mean().unstack("model")
    wide = wide[[m for m in MODELS if m in wide.columns]]
    return wide.reset_index().round(3)


def group_acc_long(df: pd.DataFrame, group_names: list[str], method: str, reweight: bool) -> pd.DataFrame:
    """Per-group test accuracy of each model at the largest ratio (mean over seeds), long format."""
    r = df["ratio"].max()
    rows = []
    for model in [m for m in MODELS if m in set(df["model"])]:
        accs = np.nanmean(np.array(df[(df["ratio"] == r) & (df["model"] == model)]["group_acc"].tolist(), dtype=float), 0)
        for gi, acc in enumerate(accs):
            rows.append({"group": f"{group_names[gi]} | {model_label(model, method, reweight)}",
                         "accuracy": round(float(acc), 3)})
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
        d = Path(logs_dir) / model / (str(seed) if model == "pretrain" else f"{ratio}-{seed}")
        s = read_curve(d, metric)
        if s is not None:
            cols[model] = s
    if not cols:
        return pd.DataFrame()
    out = pd.DataFrame(cols)
    out.index.name = "epoch"
    return out.reset_index().round(4)


def plot_ga(wide: pd.DataFrame, df: pd.DataFrame, path: Path, title: str, unlearned_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grmu.runtime import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    std = df.groupby(["ratio", "model"])["GA"].std(ddof=0).unstack("model")
    for model in wide.columns[1:]:
        ax.errorbar(wide["ratio"], wide[model], yerr=std[model].to_numpy(), marker="o", capsize=3,
                    label=LABELS.get(model, unlearned_label))
    ax.set_xlabel("unlearning ratio")
    ax.set_ylabel("GA: test accuracy of the forget group (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def aggregate(params: dict, eval_dir, logs_dir, prepared_meta: dict, metrics_dir, plots_dir) -> pd.DataFrame:
    """Write metrics/summary.json, metrics/table.{md,csv}, metrics/per_seed.csv and plots/*."""
    method, reweight = params["method"], params["reweight"]
    ratios, seeds = params["ratios"], params["seeds"]
    df = add_gaps(collect(eval_dir, ratios, seeds))
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    table = summary_table(df, labels_for(method, reweight))
    header = (f"# {prepared_meta['dataset']}: {model_label('unlearned', method, reweight)} vs references\n\n"
              f"Mean ± std over seeds {list(seeds)}; Δ and avg. gap against RETRAIN+REWEIGHT of the same "
              f"seed and ratio. Forget groups: {forget_groups(params['forget'], prepared_meta)}.\n\n")
    write_text(metrics_dir / "table.md", header + to_markdown(table))
    with_paths = [(metrics_dir / "table.csv", table), (metrics_dir / "per_seed.csv", df.drop(columns=["group_acc"]))]
    for path, frame in with_paths:
        write_text(path, frame.to_csv(index=False))
    write_json(metrics_dir / "summary.json",
               {**summary_json(df, method, reweight), "env": environments(eval_dir, ratios, seeds)})

    names = [f"g{i} ({prepared_meta['classes'][i // prepared_meta['n_attrs']]}, "
             f"{prepared_meta['attrs'][i % prepared_meta['n_attrs']]})"
             for i in range(prepared_meta["n_classes"] * prepared_meta["n_attrs"])]
    wide = ga_vs_ratio(df)
    write_text(plots_dir / "ga_vs_ratio.csv", wide.to_csv(index=False))
    write_text(plots_dir / "group_acc.csv", group_acc_long(df, names, method, reweight).to_csv(index=False))
    ref_models = ["pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro"]
    r_max, s0 = max(ratios), seeds[0]
    write_text(plots_dir / "curves_reference.csv", curves(logs_dir, r_max, s0, "val_acc", ref_models).to_csv(index=False))
    unl = pd.DataFrame()
    for metric in ("val_acc", "forget_acc"):
        c = curves(logs_dir, r_max, s0, metric, ["unlearned"])
        if not c.empty:
            unl = c.rename(columns={"unlearned": metric}) if unl.empty else unl.merge(
                c.rename(columns={"unlearned": metric}), on="epoch")
    write_text(plots_dir / "curves_unlearn.csv", unl.to_csv(index=False))
    plot_ga(wide, df, plots_dir / "ga_vs_ratio.png", f"{prepared_meta['dataset']}: GA vs unlearning ratio",
            model_label("unlearned", method, reweight))
    return df


# --------------------------------------------------------------------------------------------
# Comparing experiments: `grmu report`


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


def plot_gap_vs_ratio(df: pd.DataFrame, labels: dict, path: Path) -> pd.DataFrame:
    """avg. gap (mean ± std over seeds) against the ratio, one line per method (paper Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from grmu.runtime import atomic_path

    methods = [m for m in labels if m.startswith("exp:")]
    stats = df[df["model"].isin(methods)].groupby(["model", "ratio"])["avg_gap"].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(6, 4))
    wide = {}
    for m in methods:
        st = stats.loc[m]
        ax.errorbar(st.index, st["mean"], yerr=st["std"].fillna(0).to_numpy(), marker="o", capsize=3, label=labels[m])
        wide[labels[m]] = st["mean"].round(3)
    ax.set_xlabel("unlearning ratio")
    ax.set_ylabel("avg. gap vs RETRAIN+REWEIGHT (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return pd.DataFrame(wide).rename_axis("ratio").reset_index()


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
