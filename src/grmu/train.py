"""The one training loop, used by pretrain, every retrain variant and every unlearning method.

An epoch is a list of ``Pass``es (e.g. SCRUB: a forget pass then a remaining pass); each pass
draws batches of sample indices (plain shuffle, or weighted with replacement for REWEIGHT /
Group-DRO), computes its loss and takes an SGD step. The learning rate follows a linear
per-iteration warmup (first iteration at lr 0) and then a per-epoch cosine
(``T_max = epochs - warmup_epochs``) or constant schedule, as in the paper's code. With
``augment: true`` image batches get the prepared dataset's training augmentation
(``grmu.augment``), drawn from the loop's seeded generator so that runs stay reproducible.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from grmu import GrmuError
from grmu.augment import train_augmentation
from grmu.inference import model_accuracy, to_input
from grmu.prepared import Prepared


def ce_loss(model, x, y, g):
    return F.cross_entropy(model(x), y)


@dataclass
class Pass:
    """One pass of an epoch over ``idx``.

    ``loss(model, x, y, g) -> scalar``. With ``weights``, batches are drawn with replacement,
    ``len(idx)`` draws per pass, with probability proportional to the weights.
    """

    name: str
    idx: np.ndarray
    loss: Callable = ce_loss
    batch_size: int = 64
    weights: np.ndarray | None = None

    def order(self, gen: torch.Generator) -> torch.Tensor:
        idx = torch.as_tensor(self.idx, dtype=torch.long)
        if self.weights is None:
            return idx[torch.randperm(len(idx), generator=gen)]
        w = torch.as_tensor(self.weights, dtype=torch.double)
        return idx[torch.multinomial(w, len(idx), replacement=True, generator=gen)]

    def n_batches(self) -> int:
        return math.ceil(len(self.idx) / self.batch_size)


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's image runs) or AdamW (its BERT runs; momentum unused)."""
    if cfg.get("optimizer", "sgd") == "adamw":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def lr_factor(cfg: dict, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at ``step`` of ``epoch``."""
    warm = int(cfg.get("warmup_epochs", 0))
    if epoch < warm:
        return (epoch * steps_per_epoch + step) / (warm * steps_per_epoch)
    if cfg["schedule"] == "const":
        return 1.0
    t_max = max(cfg["epochs"] - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warm) / t_max))


def fit(
    model,
    prep: Prepared,
    passes: Callable[[int], list[Pass]],
    cfg: dict,
    *,
    seed: int,
    val_idx: np.ndarray | None = None,
    select_best: bool = False,
    watch: dict[str, np.ndarray] | None = None,
    live=None,
    desc: str = "train",
    optimizer: torch.optim.Optimizer | None = None,
    after_backward: Callable | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
):
    """Train ``model`` for ``cfg['epochs']`` epochs of ``passes(epoch)``.

    * ``select_best``: return the epoch with the best validation accuracy (strict ``>``, as
      pretrain/retrain in the paper); otherwise the last epoch (as unlearning methods).
    * ``watch``: extra index sets whose accuracy is logged each epoch (e.g. the forget set).
    * ``live``: a dvclive ``Live``; logs lr, each pass's mean loss and accuracies per epoch.
    * ``after_backward(model)``: hook between ``backward`` and ``step`` (e.g. SalUn's mask).
    * ``on_epoch_start(epoch)``: hook before an epoch's passes (e.g. MIU's estimator tuning).
    """
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    opt = optimizer or make_optimizer(model.parameters(), cfg)
    base_lrs = [grp["lr"] for grp in opt.param_groups]
    best_acc, best_state, history = -1.0, None, []
    y_all = torch.as_tensor(prep.y)
    g_all = torch.as_tensor(prep.g)
    augment = train_augmentation(prep) if cfg.get("augment") else None

    bar = tqdm(range(cfg["epochs"]), desc=desc, unit="epoch", leave=False, dynamic_ncols=True)
    for epoch in bar:
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        epoch_passes = passes(epoch)
        steps = sum(p.n_batches() for p in epoch_passes)
        step, row = 0, {"epoch": epoch}
        model.train()
        for p in epoch_passes:
            order, total, count = p.order(gen), 0.0, 0
            for start in range(0, len(order), p.batch_size):
                b = order[start : start + p.batch_size]
                factor = lr_factor(cfg, epoch, step, steps)
                for grp, lr in zip(opt.param_groups, base_lrs):
                    grp["lr"] = lr * factor
                x = to_input(prep.inputs[b], dev)
                if augment is not None and x.dim() == 4:
                    x = augment(x, gen)
                loss = p.loss(model, x, y_all[b].to(dev), g_all[b].to(dev))
                value = float(loss.detach())
                if not math.isfinite(value):  # a diverged run must never become a result
                    raise GrmuError(f"{desc}: the loss became {value} in epoch {epoch}, pass '{p.name}', "
                                    f"step {step} at lr {base_lrs[0] * factor:g}; the run diverged and nothing was "
                                    "saved: lower the learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                opt.step()
                total += value * len(b)
                count += len(b)
                step += 1
            row[f"loss_{p.name}"] = total / max(count, 1)
        row["lr"] = base_lrs[0] * lr_factor(cfg, epoch, max(step - 1, 0), max(steps, 1))
        if val_idx is not None:
            row["val_acc"] = model_accuracy(model, prep, val_idx)
        for name, idx in (watch or {}).items():
            row[f"{name}_acc"] = model_accuracy(model, prep, idx)
        history.append(row)
        if live is not None:
            for k, v in row.items():
                if k != "epoch":
                    live.log_metric(k, v)
            live.next_step()
        bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "epoch"})
        if select_best and val_idx is not None and row["val_acc"] > best_acc:
            best_acc, best_state = row["val_acc"], copy.deepcopy(model.state_dict())
            row["best"] = True
    bar.close()
    if select_best and best_state is not None:
        model.load_state_dict(best_state)
    return model, history
