"""Stage `pretrain@{seed}`: train from scratch on all of train, keep the best-validation epoch;
save the checkpoint and, beside it, the model's outputs on every sample (``grmu.inference``).

``train_and_save`` is the body shared with the RETRAIN stages (``grmu.stages.retrain``)."""

from __future__ import annotations

import time

import numpy as np

from grmu.distributed import is_main
from grmu.outputs import outputs_path, save_outputs
from grmu.models import new_model, save_checkpoint
from grmu.prepared import Prepared, load_prepared
from grmu.protocols import protocol_name
from grmu.runtime import close_live, live_run, run_info
from grmu.train import Pass, ce_loss, fit


def train_model(
    params: dict,
    cfg: dict,
    prep: Prepared,
    idx: np.ndarray,
    seed: int,
    name: str,
    loss=ce_loss,
    weights: np.ndarray | None = None,
    live=None,
):
    """A fresh model of ``params['model']`` trained with ``cfg`` on samples ``idx`` (drawn with
    ``weights`` when given), at its best-validation-accuracy epoch: ``(model, history, seconds)``."""
    model = new_model(params["model"], prep, seed)
    p = Pass("train", idx, loss, cfg["batch_size"], weights)
    t0 = time.time()
    model, history = fit(
        model,
        prep,
        lambda e: [p],
        cfg,
        seed=seed,
        val_idx=prep.indices("val"),
        select_best=True,
        live=live,
        desc=f"{name} s{seed}",
    )
    return model, history, time.time() - t0


def train_and_save(
    params: dict,
    cfg: dict,
    prep: Prepared,
    idx: np.ndarray,
    seed: int,
    out,
    live_dir,
    name: str,
    loss=ce_loss,
    weights: np.ndarray | None = None,
    settings: dict | None = None,
) -> dict:
    """``train_model``, then save the model to ``out`` and its outputs on every sample beside it
    (``grmu.inference.outputs_path``).

    The checkpoint's info records the model, ``cfg``, the protocol and ``settings`` (a
    variant's own, e.g. Group-DRO's eta) next to the training history."""
    main = is_main()  # under DDP, process 0 alone logs and saves (grmu.distributed)
    with live_run(live_dir if main else None) as live:
        model, history, seconds = train_model(params, cfg, prep, idx, seed, name, loss, weights, live)
        info = {
            "name": name,
            "seed": seed,
            "n_train": int(len(idx)),
            "protocol": protocol_name(params),
            "model": dict(params["model"]),
            "train": cfg,
            **(settings or {}),
            "history": history,
            "run": run_info(seed),
        }
        close_live(live, "train_seconds", seconds)
        if main:
            save_outputs(
                outputs_path(out),
                model,
                prep,
                params["eval"]["batch_size"],
                {k: v for k, v in info.items() if k != "history"},
                f"{name} seed {seed}",
            )
            save_checkpoint(out, model.cpu(), info)
    if main:
        print(f"{name} seed={seed}: best val acc {max(h['val_acc'] for h in history):.2f} in {seconds:.1f}s")
    return {**info, "train_seconds": seconds}


def run(params: dict, prepared, seed: int, out, live_dir=None) -> dict:
    prep = load_prepared(prepared)
    return train_and_save(params, dict(params["train"]), prep, prep.indices("train"), seed, out, live_dir, "pretrain")
