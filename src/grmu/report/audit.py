"""The forgetting audits of the reported experiments (docs/audit.md): one row per experiment and
audited ratio, one per group of its forget examples and, for memorization forget sets, one per
memorization level; and the per-example ε of every experiment in one figure."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from grmu import GrmuError
from grmu.report.gaps import model_label
from grmu.memorization import SUBSETS
from grmu.runtime import write_text
from grmu.report.tables import to_markdown
from grmu.report.gitread import git_files, git_show
from grmu.stages.audit import panels

RERUN = "rerun `dvc repro audit` (or restore the file)"
ATTACKS = (("AUC", "AUC"), ("TPR@1%", "TPR@FPR=0.01"), ("TPR@0.1%", "TPR@FPR=0.001"))


def read_audit(text: str, where: str) -> dict:
    """An audit result (``metrics/audit/{ratio}.json``) from ``where``, checked for what the report
    reads: one line naming the file and the problem otherwise."""
    try:
        a = json.loads(text)
        for side in ("unlearned", "original"):
            for key in ("F", "score", "eps_mean"):
                float(a[side][key])
            for attack in ("ulira", "population"):
                for _, key in ATTACKS:
                    float(a[side][attack][key])
            for part in ("groups", "levels"):
                for row in a[side].get(part, {}).values():
                    float(row["F"]), float(row["ulira"]["AUC"]), int(row["n"])
        float(a["ratio"]), int(a["models"]), str(a["method"]), bool(a["reweight"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise GrmuError.wrap(f"damaged audit result {where}; {RERUN}", e) from e
    return a


def load_audits(repo: str | Path, experiments: list[dict]) -> list[dict]:
    """Each experiment's audits at its commit: ``{"label", "name", "ratio", "result", "examples"}``."""

    def _show(repo: Path, rev: str, path: str) -> str:
        text = git_show(repo, rev, path)
        if text is None:
            raise FileNotFoundError(f"{path} is not in {rev}")
        return text

    repo, out = Path(repo), []
    for exp in experiments:
        for name in git_files(repo, exp["rev"], "metrics/audit", ".json"):
            where = f"metrics/audit/{name} of {exp['name']}"
            result = read_audit(_show(repo, exp["rev"], f"metrics/audit/{name}"), where)
            csv = Path(name).with_suffix(".csv").name
            try:
                examples = pd.read_csv(io.StringIO(_show(repo, exp["rev"], f"plots/audit/{csv}")))
                examples = examples[["group", "level", "eps", "eps_original"]].fillna({"level": ""})
            except (FileNotFoundError, KeyError, ValueError) as e:
                raise GrmuError.wrap(f"missing or damaged plots/audit/{csv} of {exp['name']}; {RERUN}", e) from e
            label = model_label("unlearned", result["method"], result["reweight"])
            out.append(
                {"label": label, "name": exp["name"], "ratio": result["ratio"], "result": result, "examples": examples}
            )
    return out


def _row(label: str, ratio, n: int, group: str, side: dict, nothing: dict | None) -> dict:
    row = {"method": label, "ratio": ratio, "N": n, "group": group, "n forget": side.get("n"), "F": side["F"]}
    if nothing is not None:
        row["F (doing nothing)"] = nothing["F"]
    row["ε mean"] = side["eps_mean"]
    for attack, name in (("ulira", "U-LiRA"), ("population", "population")):
        for short, key in ATTACKS:
            row[f"{name} {short}"] = side[attack][key]
    return row


def _levels(side: dict) -> list[tuple[str, dict]]:
    """The memorization levels of a side's breakdown (none for other forget sets), high to low."""
    levels = side.get("levels", {})
    return [(f"memorization {lv}", levels[lv]) for lv in SUBSETS if lv in levels]


def audit_table(audits: list[dict]) -> pd.DataFrame:
    """One row per audit (group "all", with the final score), one per group of its forget examples
    (where there are several) and one per memorization level ("memorization high", ...); doing
    nothing (the originals) as the first row of each ratio, and as the column "F (doing nothing)"
    of the others."""
    rows, seen = [], set()
    for a in audits:
        r = a["result"]
        key = (a["label"], r["ratio"])
        if key in seen:  # the newest experiment of a label and ratio (experiments come newest first)
            continue
        seen.add(key)
        if ("doing nothing", r["ratio"]) not in seen:
            seen.add(("doing nothing", r["ratio"]))
            rows.append(
                {
                    **_row(
                        "doing nothing (PRETRAIN)",
                        r["ratio"],
                        r["models"],
                        "all",
                        {**r["original"], "n": r["n_forget"]},
                        None,
                    )
                }
            )
        rows.append(
            {
                **_row(
                    a["label"], r["ratio"], r["models"], "all", {**r["unlearned"], "n": r["n_forget"]}, r["original"]
                ),
                "score": r["unlearned"]["score"],
            }
        )
        parts = list(r["unlearned"]["groups"].items()) if len(r["unlearned"]["groups"]) > 1 else []
        nothing = {**r["original"]["groups"], **dict(_levels(r["original"]))}
        for g, side in parts + _levels(r["unlearned"]):
            rows.append(_row(a["label"], r["ratio"], r["models"], g, side, nothing[g]))
    return pd.DataFrame(rows)


def line_colors(n: int) -> list:
    """A distinct colour for each of ``n`` lines: matplotlib's 10-colour cycle, or the 20 colours
    of ``tab20`` for more (a method comparison with RUM has 11 and more)."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps

    return [colormaps["tab20"](i % 20) for i in range(n)]


def plot_audits(audits: list[dict], path: Path) -> None:
    """The share of forget examples with ε ≤ x, one line per experiment (and doing nothing,
    dotted), a panel per group (per memorization level for memorization forget sets); ε beyond
    the last bin drawn at its edge."""
    from grmu.report.plots import _pyplot, save_figure

    plt = _pyplot()
    column, groups = panels(pd.concat([a["examples"] for a in audits]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), squeeze=False)
    top = max(np.ceil(np.log(a["result"]["models"] - 1)) for a in audits) + 0.5
    colors = line_colors(len(audits))
    for ax, group in zip(axes[0], groups):
        drawn = set()
        for i, a in enumerate(audits):
            part = a["examples"][a["examples"][column] == group]
            curves = [("eps", "-", a["label"])]
            if ("nothing", a["ratio"]) not in drawn:
                curves.append(("eps_original", ":", "doing nothing"))
                drawn.add(("nothing", a["ratio"]))
            for col, style, label in curves:
                x = np.sort(np.minimum(part[col].to_numpy(), top))
                ax.step(
                    x,
                    np.arange(1, len(x) + 1) / max(len(x), 1),
                    where="post",
                    ls=style,
                    color="k" if style == ":" else colors[i],
                    label=f"{label} r={a['ratio']}",
                )
        ax.set_xlim(0, top)
        ax.set_xlabel(f"per-example ε (≥ {top - 0.5:g}: beyond the last bin)")
        ax.set_ylabel("share of forget examples with ε ≤ x")
        ax.set_title(f"memorization {group}" if column == "level" else group, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def write_audit_report(audits: list[dict], out_dir: Path) -> str:
    """``audit.md``, ``audit.csv`` and ``audit_eps.png`` of the audits in ``out_dir``; the markdown."""
    table = audit_table(audits)
    md = (
        "# Forgetting audit\n\nPer experiment and audited ratio: forgetting quality F (1 = every forget "
        "example indistinguishable from retraining), the final score, mean per-example ε, and the U-LiRA and "
        "population attacks (AUC, TPR at FPR 1% and 0.1%) on N unlearned vs N RETRAIN models; per group "
        "where the forget set spans several, per memorization level for memorization forget sets. "
        "docs/audit.md says how each is computed.\n\n" + to_markdown(table.round(3).astype(object).fillna(""))
    )
    write_text(Path(out_dir) / "audit.md", md)
    write_text(Path(out_dir) / "audit.csv", table.to_csv(index=False))
    plot_audits(audits, Path(out_dir) / "audit_eps.png")
    return md
