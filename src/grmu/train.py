"""The one training loop, used by pretrain, every retrain variant and every unlearning method.

An epoch is a list of ``Pass``es (e.g. SCRUB: a forget pass then a remaining pass); each pass
draws batches of sample indices (plain shuffle, or weighted with replacement for REWEIGHT /
Group-DRO), computes its loss and takes an SGD step. The learning rate follows a linear
per-iteration warmup (first iteration at lr 0) and then a per-epoch cosine
(``T_max = epochs - warmup_epochs``) or constant schedule, as in the paper's code. With
``augment: true`` image batches get the prepared dataset's training augmentation
(``grmu.augment``), drawn from the loop's seeded generator so that runs stay reproducible.

A batch normally gets one update (its pass's loss, the loop's optimizer). Methods that need
more use a pass's ``partner`` (a second index set whose shuffled batches are cycled alongside,
as NegGrad+ and Sharp MinMax) and ``steps`` (several updates per batch, each with its own loss,
optimizer, SAM settings and gradient hook, as Sharp MinMax). With ``cfg['sam']`` (or a step's
own ``sam``) in mode min/max each update is a SAM step (``grmu.sam``); mode none leaves the loop
exactly as without it.

Losses stay on the device until the end of a pass (one read-back per pass, not per step); a
loss that is not finite then stops the run, naming its epoch, pass, step and lr. Under DDP
(``grmu.distributed``: the training stages with ``distributed.processes > 1``) each process
takes its share of every batch, its loss weighted by that share, through the DDP-wrapped model.
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

from grmu import GrmuError, distributed
from grmu.augment import train_augmentation
from grmu.inference import autocast, channels_last, model_accuracy, to_input
from grmu.prepared import Prepared
from grmu.sam import active as sam_active
from grmu.sam import sam_gradient


PARTNER_STREAM = 7919  # seed offset of the partner batches' random stream


def ce_loss(model, x, y, g):
    return F.cross_entropy(model(x), y)


@dataclass
class Step:
    """One optimizer update of a batch (see ``Pass.steps``).

    ``optimizer``: None = the loop's; ``sam``: None = the loop's ``cfg['sam']``;
    ``after_backward(model)`` edits the final gradient before the update (a mask);
    ``before_combine(model)`` edits SAM's ``g_adv`` before it is combined with ``g``."""

    loss: Callable
    optimizer: torch.optim.Optimizer | None = None
    sam: dict | None = None
    after_backward: Callable | None = None
    before_combine: Callable | None = None


@dataclass
class Pass:
    """One pass of an epoch over ``idx``.

    ``loss(model, x, y, g) -> scalar``. With ``weights``, batches are drawn with replacement,
    ``len(idx)`` draws per pass, with probability proportional to the weights.

    * ``relabel(b, y) -> y'``: the labels the loss sees for the samples ``b``, drawn once per
      batch (random labels), so that a SAM step's second pass sees the same ones.
    * ``partner``: a second index set, shuffled once per pass and cycled (its batches repeat
      when it runs out, as ``itertools.cycle`` in upstream NegGrad+); the loss is then called
      as ``loss(model, x, y, g, (px, py, pg))``.
    * ``steps``: several updates per batch (each a ``Step`` with its own loss); default one
      update with ``loss``.
    * ``on_batch(b)``: called with each batch's sample indices before its updates (per-example
      records, as the memorization proxies).
    """

    name: str
    idx: np.ndarray
    loss: Callable = ce_loss
    batch_size: int = 64
    weights: np.ndarray | None = None
    relabel: Callable | None = None
    partner: np.ndarray | None = None
    partner_batch_size: int | None = None
    steps: list[Step] | None = None
    on_batch: Callable | None = None

    def order(self, gen: torch.Generator) -> torch.Tensor:
        idx = torch.as_tensor(self.idx, dtype=torch.long)
        if self.weights is None:
            return idx[torch.randperm(len(idx), generator=gen)]
        w = torch.as_tensor(self.weights, dtype=torch.double)
        return idx[torch.multinomial(w, len(idx), replacement=True, generator=gen)]

    def n_batches(self) -> int:
        return math.ceil(len(self.idx) / self.batch_size)

    def updates(self, after_backward: Callable | None) -> list[Step]:
        return self.steps or [Step(self.loss, after_backward=after_backward)]

    def partner_batches(self, gen: torch.Generator) -> list[torch.Tensor]:
        idx = torch.as_tensor(self.partner, dtype=torch.long)
        order = idx[torch.randperm(len(idx), generator=gen)]
        bs = self.partner_batch_size or self.batch_size
        return [order[s : s + bs] for s in range(0, len(order), bs)]


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
    stop: Callable[[list[dict]], bool] | None = None,
):
    """Train ``model`` for ``cfg['epochs']`` epochs of ``passes(epoch)``.

    * ``select_best``: return the epoch with the best validation accuracy (strict ``>``, as
      pretrain/retrain in the paper); otherwise the last epoch (as unlearning methods).
    * ``watch``: extra index sets whose accuracy is logged each epoch (e.g. the forget set).
    * ``live``: a dvclive ``Live``; logs lr, each pass's mean loss and accuracies per epoch.
    * ``after_backward(model)``: hook between ``backward`` and ``step`` (e.g. SalUn's mask).
    * ``on_epoch_start(epoch)``: hook before an epoch's passes (e.g. MIU's estimator tuning).
    * ``stop(history)``: after each epoch's row is logged; True ends training there (early
      stopping, e.g. ``ho_ret``'s fine-tuning).
    """
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    opt = optimizer or make_optimizer(model.parameters(), cfg)
    base_lrs: dict[int, list[float]] = {}  # each optimizer's own lrs, recorded when first used

    def schedule(o: torch.optim.Optimizer, factor: float) -> torch.optim.Optimizer:
        lrs = base_lrs.setdefault(id(o), [grp["lr"] for grp in o.param_groups])
        for grp, lr in zip(o.param_groups, lrs):
            grp["lr"] = lr * factor
        return o

    schedule(opt, 1.0)
    base_lr = base_lrs[id(opt)][0]
    best_acc, best_state, history = -1.0, None, []
    inputs, y_all, g_all = prep.inputs, torch.as_tensor(prep.y), torch.as_tensor(prep.g)
    on_device = (
        dev.type == "cuda" and isinstance(inputs, torch.Tensor) and inputs.nbytes < torch.cuda.mem_get_info(dev)[0] // 4
    )
    if on_device:  # the whole dataset on the GPU: no gather or copy on the host per batch
        inputs, y_all, g_all = inputs.to(dev), y_all.to(dev), g_all.to(dev)
    augment = train_augmentation(prep) if cfg.get("augment") else None
    parallel = distributed.active()

    # partner batches (order and augmentation) draw from their own stream, so the main pass's
    # batches are the same with and without a partner
    partner_gen = torch.Generator().manual_seed(int(seed) + PARTNER_STREAM)

    def batch(b: torch.Tensor, rng: torch.Generator = gen) -> list:
        """The batch ``b`` (this process's share of it under DDP) on the device, augmented."""
        mine, b = distributed.shard(len(b)), b.to(dev) if on_device else b
        if augment is None:
            x = to_input(inputs[b[mine]], dev)
        else:  # image augmentation is drawn for the whole batch, as in one process
            x = to_input(inputs[b], dev)
            x = channels_last(augment(x, rng)[mine]) if x.dim() == 4 else x[mine]
        return [x, y_all[b[mine]].to(dev), g_all[b[mine]].to(dev)]

    bar = tqdm(
        range(cfg["epochs"]),
        desc=desc,
        unit="epoch",
        leave=False,
        dynamic_ncols=True,
        disable=not distributed.is_main(),
    )
    with distributed.data_parallel(model) as net:
        for epoch in bar:
            if on_epoch_start is not None:
                with autocast(model):  # e.g. MIU's estimator tuning runs the model too
                    on_epoch_start(epoch)
            epoch_passes = passes(epoch)
            steps = sum(p.n_batches() for p in epoch_passes)
            step, row = 0, {"epoch": epoch}
            model.train()
            for p in epoch_passes:
                if parallel and (p.partner is not None or p.steps or p.relabel or p.on_batch):
                    raise GrmuError(
                        f"{desc}: pass '{p.name}' uses partner batches, several steps, relabelling or "
                        "per-batch records, which distributed training does not support; "
                        "use distributed.processes 1"
                    )
                order, first, losses, sizes = p.order(gen), step, [], []
                cycled = p.partner_batches(partner_gen) if p.partner is not None else None
                for k, start in enumerate(range(0, len(order), p.batch_size)):
                    b = order[start : start + p.batch_size]
                    factor = lr_factor(cfg, epoch, step, steps)
                    args = batch(b)
                    if p.relabel is not None:
                        args[1] = p.relabel(b, args[1])
                    if p.on_batch is not None:
                        p.on_batch(b)
                    if cycled is not None:
                        args.append(tuple(batch(cycled[k % len(cycled)], partner_gen)))
                    scale = distributed.loss_scale(len(args[1]), len(b)) if parallel else None
                    updates = p.updates(after_backward)
                    for st in updates:
                        losses.append(
                            update(net, st, args, schedule(st.optimizer or opt, factor), cfg.get("sam"), scale)
                        )
                    sizes.append((len(b), len(updates)))
                    step += 1
                row[f"loss_{p.name}"] = pass_loss(
                    losses,
                    sizes,
                    lambda i, v: (
                        f"{desc}: the loss became {v} in epoch {epoch}, pass '{p.name}', step {first + i} at lr "
                        f"{base_lr * lr_factor(cfg, epoch, first + i, steps):g}"
                    ),
                )
            row["lr"] = base_lr * lr_factor(cfg, epoch, max(step - 1, 0), max(steps, 1))
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
            if stop is not None and stop(history):
                break
    bar.close()
    if select_best and best_state is not None:
        model.load_state_dict(best_state)
    return model, history


def pass_loss(losses: list[torch.Tensor], sizes: list[tuple[int, int]], where: Callable[[int, float], str]) -> float:
    """The mean loss of a pass from its updates' losses (left on the device during the pass, so
    that the loop never waits for the GPU; summed over the processes under DDP): per batch the
    sum of its updates' losses, weighted by the batch size. A loss that is not finite stops
    the run with ``where(batch number in the pass, value)``."""
    if not losses:
        return 0.0
    values = torch.stack(losses)
    if distributed.active():
        values = distributed.all_sum(values) / distributed.world_size()
    values = values.tolist()
    total, count, i = 0.0, 0, 0
    for k, (n, n_updates) in enumerate(sizes):
        value = 0.0
        for v in values[i : i + n_updates]:
            value += v
            if not math.isfinite(v):  # a diverged run must never become a result
                raise GrmuError(where(k, v) + "; the run diverged and nothing was saved: lower the learning rate")
        i += n_updates
        total += value * n
        count += n
    return total / max(count, 1)


def update(
    model, st: Step, args: list, opt: torch.optim.Optimizer, loop_sam: dict | None, scale: float | None = None
) -> torch.Tensor:
    """One update of ``model`` by ``opt`` on a batch (``args``: x, y, g[, partner]); returns the
    loss (detached, on the device). Under DDP the loss is multiplied by ``scale``
    (``grmu.distributed.loss_scale``); a process with no sample in the batch (scale 0) counts
    its loss of the empty batch, a NaN, as 0. The forward passes run under the model's autocast
    (bf16 models), the backward outside it."""

    def forward():
        with autocast(model):
            loss = st.loss(model, *args)
        if scale is None:
            return loss
        return (loss if scale else loss.nan_to_num(0.0)) * scale

    loss = forward()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    sam = st.sam if st.sam is not None else loop_sam
    if sam_active(sam):
        sam_gradient(model, forward, sam, st.before_combine)
    if st.after_backward is not None:
        st.after_backward(model)
    opt.step()
    return loss.detach().double()
