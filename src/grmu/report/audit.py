"""The forgetting audits of the reported experiments (docs/audit.md): one row per experiment and
audited ratio, and one per group of its forget examples; and the per-example ε of every
experiment in one figure."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from grmu import GrmuError
from grmu.report.gaps import model_label
from grmu.report.gitread import git_files, git_show

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
            for g, row in a[side]["groups"].items():
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
                examples = examples[["group", "eps", "eps_original"]]
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


def audit_table(audits: list[dict]) -> pd.DataFrame:
    """One row per audit (group "all", with the final score) and one per group of its forget
    examples; the same for doing nothing (the originals) as the first rows of each ratio."""
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
        if len(r["unlearned"]["groups"]) > 1:
            for g, side in r["unlearned"]["groups"].items():
                rows.append(_row(a["label"], r["ratio"], r["models"], g, side, r["original"]["groups"][g]))
    return pd.DataFrame(rows)


def plot_audits(audits: list[dict], path: Path) -> None:
    """The share of forget examples with ε ≤ x, one line per experiment (and doing nothing,
    dotted), a panel per group; ε beyond the last bin drawn at its edge."""
    from grmu.report.plots import _pyplot, save_figure

    plt = _pyplot()
    groups = sorted({g for a in audits for g in a["examples"]["group"].unique()})
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), squeeze=False)
    top = max(np.ceil(np.log(a["result"]["models"] - 1)) for a in audits) + 0.5
    for ax, group in zip(axes[0], groups):
        drawn = set()
        for i, a in enumerate(audits):
            part = a["examples"][a["examples"]["group"] == group]
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
                    color="k" if style == ":" else f"C{i % 10}",
                    label=f"{label} r={a['ratio']}",
                )
        ax.set_xlim(0, top)
        ax.set_xlabel(f"per-example ε (≥ {top - 0.5:g}: beyond the last bin)")
        ax.set_ylabel("share of forget examples with ε ≤ x")
        ax.set_title(group, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)
