"""Stage `audit@{ratio}`: the forgetting audit's numbers from the models of `audit_models@{ratio}`
(docs/audit.md); numpy and scikit-learn only, no model runs here.

Per forget example, from the logit-scaled confidence φ of N unlearned and N RETRAIN models: the
competition's ε and points, hence the forgetting quality F and the final score; U-LiRA's
per-example likelihood ratio, every model a target once (``grmu.audit.leave_one_out``),
and the population attack on the same targets (one threshold on φ for every example) that it is
compared with. The same for the N originals before unlearning (doing nothing). Each also per
group of the forget examples and, for memorization forget sets, per memorization level.

Writes ``metrics/audit/{ratio}.json`` (the numbers), ``plots/audit/{ratio}.csv`` (one row per
forget example) and ``plots/audit/{ratio}.png`` (the distribution of ε per group)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from grmu import GrmuError
from grmu.audit import (
    ACCURACIES,
    SIDES,
    attack_metrics,
    attack_metrics_by_group,
    by_group,
    competition_score,
    epsilon_scores,
    example_epsilon,
    leave_one_out,
    logit_confidence,
    population_scores,
    ulira_scores,
)
from grmu.memorization import SUBSETS
from grmu.prepared import group_names, load_prepared
from grmu.runtime import write_json, write_text
from grmu.splits import load_forget

ATTACK_KEYS = ("AUC", "TPR@FPR=0.01", "TPR@FPR=0.001", "best_balanced_accuracy")


def load(path, forget: np.ndarray, n_classes: int, sides: tuple[str, ...]) -> dict:
    """The arrays of a population file of ``grmu.stages.audit_models`` (``sides`` in it), checked
    against the forget set; never unpickles anything."""
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        data["info"] = json.loads(str(data["info"]))
        n = data["info"]["models"]
        if not np.array_equal(data["forget"], forget):
            raise ValueError("its forget examples are not those of the forget set")
        for s in sides:
            if data[f"logits_{s}"].shape != (n, len(forget), n_classes):
                raise ValueError(f"logits_{s} has shape {data[f'logits_{s}'].shape}")
            if data[f"acc_{s}"].shape != (n, len(ACCURACIES)):
                raise ValueError(f"acc_{s} has shape {data[f'acc_{s}'].shape}")
    except FileNotFoundError:
        raise GrmuError(f"missing audit models: {path} (run `dvc repro` with audit.ratios set)") from None
    except Exception as e:  # zipfile, numpy, json raise many types for a damaged or foreign file
        raise GrmuError.wrap(f"cannot read audit models {path} (rerun the stage that makes it)", e) from e
    return data


def _attack(m: dict) -> dict:
    return {k: m[k] for k in ATTACK_KEYS}


def side_numbers(phi: np.ndarray, phi_ref: np.ndarray, acc: np.ndarray, acc_ref: np.ndarray, labels, audit: dict):
    """One side (unlearned, or the originals) against the references: ``(numbers, eps, points,
    ulira)``, the last three per example (``ulira``: its mean U-LiRA score on the side's models),
    with ``labels`` a dict of per-example label arrays (group, level) to break the numbers down by."""
    n = phi.shape[0]
    eps = example_epsilon(phi, phi_ref, delta=audit["delta"])
    points = epsilon_scores(eps, n)
    scores, member = leave_one_out(
        phi, phi_ref, partial(ulira_scores, variance=audit["variance"], center=audit["center"])
    )
    population, _ = leave_one_out(phi, phi_ref, population_scores)
    F = float(points.mean())
    out = {
        "F": F,
        "score": competition_score(F, acc[:, 0], acc[:, 1], acc_ref[:, 0], acc_ref[:, 1]),
        "eps_mean": float(eps.mean()),
        "eps_max": float(eps.max()),
        "ulira": _attack(attack_metrics(scores.ravel(), member.ravel())),
        "population": _attack(attack_metrics(population.ravel(), member.ravel())),
        "acc": dict(zip(ACCURACIES, acc.mean(0).tolist())),
    }
    for key, lab in labels.items():
        tiled = np.tile(lab, (2 * n, 1)).ravel()
        F_by, eps_by = by_group(points, lab), by_group(eps, lab)
        ul_by = attack_metrics_by_group(scores.ravel(), member.ravel(), tiled)
        pop_by = attack_metrics_by_group(population.ravel(), member.ravel(), tiled)
        out[key] = {
            k: {
                "n": F_by[k]["n"],
                "F": F_by[k]["mean"],
                "eps_mean": eps_by[k]["mean"],
                "ulira": _attack(ul_by[k]),
                "population": _attack(pop_by[k]),
            }
            for k in F_by
        }
    return out, eps, points, scores[:n].mean(0)  # per example: its mean U-LiRA score as a member


def levels(fs: dict, forget: np.ndarray) -> np.ndarray | None:
    """Each forget example's memorization level (the forget set's ``subsets`` for ``mix``, its one
    level otherwise); None for forget sets not drawn by memorization."""
    if fs.get("kind") != "memorization":
        return None
    if fs.get("level") != "mix":
        return np.full(len(forget), fs.get("level", "high"), dtype=object)
    lab = np.full(len(forget), "", dtype=object)
    for name, idx in fs["subsets"].items():
        lab[np.isin(forget, idx)] = name
    return lab


def panels(examples: pd.DataFrame) -> tuple[str, list[str]]:
    """How the per-example ε is split into panels: by memorization level (high, mid, low) where the
    forget examples have one, else by group."""
    levels = set(examples["level"].fillna("")) - {""} if "level" in examples else set()
    if levels:
        return "level", [lv for lv in SUBSETS if lv in levels]
    return "group", sorted(examples["group"].unique())


def plot_eps(df: pd.DataFrame, path, title: str) -> None:
    """The share of forget examples with ε ≤ x, per group (per memorization level for memorization
    forget sets), unlearned (solid) and originals (dotted): the per-example distribution a single F
    hides."""
    from grmu.report.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    column, groups = panels(df)
    for i, group in enumerate(groups):
        part, color = df[df[column] == group], f"C{i % 10}"
        for col, style, tag in (("eps", "-", "unlearned"), ("eps_original", ":", "original")):
            x = np.sort(part[col].to_numpy())
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", ls=style, color=color, label=f"{group} {tag}")
    ax.set_xlabel("per-example ε (lower: better forgotten)")
    ax.set_ylabel("share of forget examples with ε ≤ x")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def run(params: dict, prepared, forget_path, trained_dir, unlearned_path, out_json, out_csv, out_png) -> dict:
    prep = load_prepared(prepared, inputs=False)
    fs = load_forget(forget_path, prep)
    forget = fs["forget"]
    data = load(Path(trained_dir) / "references.npz", forget, prep.n_classes, ("original", "retrained"))
    unlearned = load(unlearned_path, forget, prep.n_classes, ("unlearned",))
    if unlearned["info"]["models"] != data["info"]["models"]:
        raise GrmuError(f"{unlearned_path} and {trained_dir} hold different numbers of models; rerun `dvc repro`")
    data.update({k: v for k, v in unlearned.items() if k.endswith("_unlearned")})
    y, audit, info = prep.y[forget], params["audit"], {**data["info"], **unlearned["info"]}
    phi = {s: logit_confidence(data[f"logits_{s}"], y) for s in SIDES}
    names = group_names(prep.meta)
    labels = {"groups": np.array([names[g] for g in prep.g[forget]], dtype=object)}
    level = levels(fs, forget)
    if level is not None:
        labels["levels"] = level
    acc_ref = data["acc_retrained"]
    result = {
        "ratio": fs["ratio"],
        "models": info["models"],
        "method": info["method"],
        "reweight": info["reweight"],
        "reference": info["reference"],
        "forget": fs.get("kind", "group"),
        "n_forget": int(len(forget)),
        "settings": {k: audit[k] for k in ("variance", "center", "delta")},
    }
    rows = {"example": forget, "group": labels["groups"], "level": level if level is not None else ""}
    for side in ("unlearned", "original"):
        numbers, eps, points, ulira = side_numbers(
            phi[side], phi["retrained"], data[f"acc_{side}"], acc_ref, labels, audit
        )
        result[side] = numbers
        suffix = "" if side == "unlearned" else "_original"
        rows.update({f"eps{suffix}": eps, f"points{suffix}": points, f"ulira{suffix}": ulira})
    result["retrained"] = {"acc": dict(zip(ACCURACIES, acc_ref.mean(0).tolist()))}
    df = pd.DataFrame(rows)
    label = f"{info['method']}{'+reweight' if info['reweight'] else ''}"
    write_json(out_json, result)
    write_text(out_csv, df.to_csv(index=False, float_format="%.6g"))
    plot_eps(
        df,
        out_png,
        f"{prep.meta['dataset']} r={fs['ratio']}: {label} vs {info['reference']}, N={info['models']} per side",
    )
    u, o = result["unlearned"], result["original"]
    print(
        f"audit r={fs['ratio']} {label}: F {u['F']:.3f} (doing nothing: {o['F']:.3f}), "
        f"U-LiRA AUC {u['ulira']['AUC']:.3f}, population AUC {u['population']['AUC']:.3f}"
    )
    return result
