"""Figures (matplotlib, Agg backend), each written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grmu.report.gaps import LABELS, curve_metric


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay out, write ``fig`` as PNG to ``path`` atomically and close it."""
    from grmu.runtime import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def plot_ga(wide: pd.DataFrame, df: pd.DataFrame, path: Path, title: str, unlearned_label: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    metric = curve_metric(df)
    std = df.groupby(["ratio", "model"])[metric].std(ddof=0).unstack("model")
    for model in wide.columns[1:]:
        ax.errorbar(
            wide["ratio"],
            wide[model],
            yerr=std[model].to_numpy(),
            marker="o",
            capsize=3,
            label=LABELS.get(model, unlearned_label),
        )
    ax.set_xlabel("unlearning ratio")
    ax.set_ylabel("GA: test accuracy of the forget group (%)" if metric == "GA" else "UA: forget-set accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_gap_vs_ratio(df: pd.DataFrame, labels: dict, path: Path) -> pd.DataFrame:
    """avg. gap (mean ± std over seeds) against the ratio, one line per method (paper Fig. 5)."""
    plt = _pyplot()
    methods = [m for m in labels if m.startswith("exp:")]
    stats = df[df["model"].isin(methods)].groupby(["model", "ratio"])["avg_gap"].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(6, 4))
    wide = {}
    for m in methods:
        st = stats.loc[m]
        ax.errorbar(st.index, st["mean"], yerr=st["std"].fillna(0).to_numpy(), marker="o", capsize=3, label=labels[m])
        wide[labels[m]] = st["mean"].round(3)
    ax.set_xlabel("unlearning ratio")
    ax.set_ylabel("avg. gap vs the reference model (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return pd.DataFrame(wide).rename_axis("ratio").reset_index()
