"""Stage `audit_train@{ratio}`: the trained model populations of the forgetting audit
(docs/audit.md), for the forget set of the ratio (that of the first experiment seed,
``data/forget/{seeds[0]}``), from independent seeds: N originals trained as PRETRAIN on all of
train (seeds ``audit.seed + k``), saved as checkpoints for ``audit_unlearn``, and N references
trained as the RETRAIN variant of ``eval.reference`` on the remaining set (seeds
``audit.seed + N + k``). Neither depends on the method, so a method switch reuses them.

Each side's N models train together (``grmu.ensemble``) where the model allows it
(``audit.ensemble``), else one after another with the one training loop. What is saved of each
population: its logits on the forget examples and each model's retain, test and forget accuracy
(``save_population``), the originals' before any unlearning: what doing nothing gives."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from grmu import GrmuError
from grmu.ensemble import ARCHS, fit_ensemble
from grmu.inference import model_accuracy, predict
from grmu.models import MODELS, new_model, save_checkpoint
from grmu.outputs import check_outputs, check_weights
from grmu.prepared import Prepared, load_prepared
from grmu.runtime import atomic_path, run_info
from grmu.sam import active as sam_active
from grmu.splits import load_forget, remaining_indices
from grmu.stages import retrain
from grmu.stages.pretrain import train_model
from grmu.train import ce_loss


def ensemble_refusal(params: dict, side: str) -> str | None:
    """Why the N models of ``side`` (``pretrain`` or a reference ``retrain_{variant}``) cannot
    train together (``grmu.ensemble``), or None. Needs only the params (``check_params`` asks)."""
    arch = MODELS.get(params["model"]["arch"]).name
    if arch not in ARCHS:
        return f"model.arch {arch} (the ensemble packs {', '.join(ARCHS)})"
    if sam_active(params["train"]["sam"]):
        return f"train.sam mode {params['train']['sam']['mode']} (SAM's perturbation is per model)"
    if side == "retrain_gdro":
        return "the Group-DRO loss of retrain_gdro (its group weights are per model)"
    return None


def check(params: dict) -> list[bool]:
    """Whether each side (PRETRAIN, the reference) trains as an ensemble; ``audit.ensemble: on``
    where it cannot is refused with one line."""
    mode, together = params["audit"]["ensemble"], []
    for side in ("pretrain", params["eval"]["reference"]):
        why = ensemble_refusal(params, side)
        if why is not None and mode == "on":
            raise GrmuError(f"audit.ensemble on: the {side} models cannot train together: {why}; valid: auto, off")
        together.append(mode != "off" and why is None)
    return together


def sides(params: dict, prep: Prepared, remaining: np.ndarray):
    """``(name, params, cfg, loss, weights, idx)`` of the two sides' training: PRETRAIN's and the
    reference's RETRAIN variant's (``grmu.stages.retrain.setup``)."""
    variant = params["eval"]["reference"].removeprefix("retrain_")
    ref_params, cfg, loss, weights, _ = retrain.setup(params, prep, variant, remaining)
    return [
        ("pretrain", params, dict(params["train"]), ce_loss, None, prep.indices("train")),
        (f"retrain_{variant}", ref_params, cfg, loss, weights, remaining),
    ]


def train_side(side_params, cfg, loss, weights, idx, prep, seeds, name, together: bool) -> list:
    """The side's models, one per seed, each at its best-validation epoch."""
    if together:
        nets = [new_model(side_params["model"], prep, s) for s in seeds]
        trained = fit_ensemble(nets, prep, idx, cfg, seeds, weights=weights, val_idx=prep.indices("val"), desc=name)
        return [net for net, _ in trained]
    return [train_model(side_params, cfg, prep, idx, s, name, loss, weights)[0] for s in seeds]


def outputs(model, prep: Prepared, forget: np.ndarray, remaining: np.ndarray, batch_size: int, what: str):
    """The model's logits on the forget examples and its retain, test and forget accuracy (x100);
    a diverged model stops the run (``grmu.outputs``)."""
    fix = "the run diverged and nothing was saved: lower the learning rate"
    check_weights(model, what, fix)
    logits = predict(model, prep, forget, batch_size).numpy()
    loss = torch.nn.functional.cross_entropy(torch.as_tensor(logits), torch.as_tensor(prep.y[forget]), reduction="none")
    check_outputs(logits, loss.numpy(), what, fix)
    accs = [model_accuracy(model, prep, idx, batch_size) for idx in (remaining, prep.indices("test"), forget)]
    return logits, np.array(accs)


def save_population(path, logits: dict, accs: dict, forget: np.ndarray, info: dict) -> None:
    """``logits_{side}`` (N x forget x classes, float32) and ``acc_{side}`` (N x ``ACCURACIES``)
    of each side, the forget examples and ``info`` (JSON), written atomically."""
    arrays = {f"logits_{s}": np.stack(v).astype(np.float32) for s, v in logits.items()}
    arrays.update({f"acc_{s}": np.stack(v) for s, v in accs.items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, forget=forget, info=np.array(json.dumps(info)), **arrays)


def audit_seeds(params: dict) -> dict:
    n, base = params["audit"]["models"], params["audit"]["seed"]
    return {"original": [base + k for k in range(n)], "retrained": [base + n + k for k in range(n)]}


def run(params: dict, prepared, forget_path, out_dir) -> dict:
    prep = load_prepared(prepared)
    fs = load_forget(forget_path, prep)
    forget = fs["forget"]
    remaining = remaining_indices(prep, forget)
    together = check(params)
    seeds, bs, out_dir = audit_seeds(params), params["eval"]["batch_size"], Path(out_dir)
    logits, accs, seconds, names = {}, {}, {}, {}
    for (name, side_params, cfg, loss, weights, idx), side, joint in zip(
        sides(params, prep, remaining), ("original", "retrained"), together
    ):
        t0 = time.time()
        models = train_side(side_params, cfg, loss, weights, idx, prep, seeds[side], name, joint)
        seconds[side], names[side] = round(time.time() - t0, 3), name
        logits[side], accs[side] = [], []
        for model, seed in zip(models, seeds[side]):
            lg, acc = outputs(model, prep, forget, remaining, bs, f"audit {name} model seed {seed}")
            logits[side].append(lg)
            accs[side].append(acc)
            if side == "original":
                info = {"name": name, "seed": seed, "model": dict(side_params["model"]), "train": cfg}
                save_checkpoint(out_dir / "original" / f"{seed}.pt", model.cpu(), {**info, "run": run_info(seed)})
    info = {
        "ratio": fs["ratio"],
        "forget_seed": fs["seed"],
        "models": params["audit"]["models"],
        "seeds": seeds,
        "reference": params["eval"]["reference"],
        "ensemble": dict(zip(("original", "retrained"), together)),
        "run": run_info(params["audit"]["seed"]),
    }  # no wall time in the file: a rerun writes the same bytes, so DVC reruns nothing downstream
    save_population(out_dir / "references.npz", logits, accs, forget, info)
    print(
        f"audit r={fs['ratio']}: {len(seeds['original'])} {names['original']} + {len(seeds['retrained'])} "
        f"{names['retrained']} models in {sum(seconds.values()):.1f}s "
        f"({'together' if all(together) else 'one at a time' if not any(together) else 'mixed'})"
    )
    return info
