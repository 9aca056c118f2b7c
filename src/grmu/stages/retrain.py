"""Stages `retrain@{variant}-{seed}`: the reference models of every ratio of a seed, each trained
from scratch on its remaining set only (never a forget sample): ``erm`` (plain), ``reweight``
(REWEIGHT sampler) or ``gdro`` (Group-DRO loss with a group-balanced sampler); best-validation
epoch. ``run`` trains one model, ``run_seed`` those of every ratio."""

from __future__ import annotations


import numpy as np

from grmu import GrmuError
from grmu.prepared import load_prepared
from grmu.stages import ratio_files
from grmu.robust import GroupDRO, group_balanced_weights, reweight_weights
from grmu.splits import load_forget, remaining_indices
from grmu.stages.pretrain import train_and_save
from grmu.train import ce_loss

VARIANTS = ("erm", "reweight", "gdro")


def setup(params: dict, prep, variant: str, idx: np.ndarray) -> tuple[dict, dict, object, np.ndarray | None, dict]:
    """How RETRAIN ``variant`` trains on the remaining samples ``idx``: ``(params, cfg, loss,
    weights, settings)`` for ``grmu.stages.pretrain.train_model`` (params with the variant's
    precision, the train loop with its lr and batch size, its loss, its sampler's weights, its
    own settings for the record)."""
    if variant not in VARIANTS:
        raise GrmuError(f"unknown retrain variant '{variant}'; valid: {', '.join(VARIANTS)}")
    overrides = params["retrain"][variant]
    cfg = dict(params["train"])
    cfg["lr"] = overrides["lr"] or cfg["lr"]
    cfg["batch_size"] = overrides["batch_size"] or cfg["batch_size"]
    if overrides["precision"] is not None:  # e.g. the official Group-DRO runs in fp32
        params = {**params, "model": {**params["model"], "precision": overrides["precision"]}}
    weights, loss, settings = None, ce_loss, {}
    if variant == "reweight":
        weights = reweight_weights(prep.g[prep.indices("train")], prep.g[idx], prep.n_groups)
    elif variant == "gdro":
        weights = group_balanced_weights(prep.g[idx], prep.n_groups)
        dro = GroupDRO(prep.n_groups, overrides["eta"])
        settings = {"eta": overrides["eta"]}

        def loss(model, x, y, g):
            return dro(model(x), y, g)

    return params, cfg, loss, weights, settings


def run(params: dict, prepared, variant: str, forget_path, seed: int, out, live_dir=None) -> dict:
    if variant not in VARIANTS:
        raise GrmuError(f"unknown retrain variant '{variant}'; valid: {', '.join(VARIANTS)}")
    prep = load_prepared(prepared)
    forget = load_forget(forget_path, prep)["forget"]
    idx = remaining_indices(prep, forget)
    assert not np.isin(idx, forget).any(), "a forget sample leaked into the retrain set"
    params, cfg, loss, weights, settings = setup(params, prep, variant, idx)
    return train_and_save(params, cfg, prep, idx, seed, out, live_dir, f"retrain_{variant}", loss, weights, settings)


def run_seed(params: dict, prepared, variant: str, forget_dir, seed: int, out_dir, live_dir=None) -> list[dict]:
    """``run`` for every ratio (``grmu.stages.ratio_files``: where each one's files lie)."""
    files = ratio_files(params, forget_dir, out_dir, live_dir)
    return [run(params, prepared, variant, forget, seed, out, live) for forget, out, live in files]
