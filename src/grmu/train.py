"""The one training loop, used by pretrain, every retrain variant and every unlearning method.

An epoch is a list of ``Pass``es (e.g. SCRUB: a forget pass then a remaining pass); each pass
draws batches of sample indices (plain shuffle, or weighted with replacement for REWEIGHT /
Group-DRO), computes its loss and takes an SGD step. The learning rate follows a linear
per-iteration warmup (first iteration at lr 0) and then a per-epoch cosine
(``T_max = epochs - warmup_epochs``) or constant schedule, as in the paper's code. With
``augment: true`` image batches get the prepared dataset's training augmentation
(``meta["augment"]``, see ``AUGMENTATIONS``): a random shift (``shift``, the default, used by
colored_mnist) or the paper's random resized crop + horizontal flip (``crop_flip``, the real
image datasets), drawn from the loop's seeded generator so that runs stay reproducible.
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
from grmu.data import Prepared


def to_input(batch: torch.Tensor, device) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] (mean = std = 0.5, as in the paper); ids pass through."""
    batch = batch.to(device, non_blocking=True)
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch


def random_shift(x: torch.Tensor, gen: torch.Generator, frac: float = 0.1) -> torch.Tensor:
    """Training augmentation for images: shift each image by up to ``frac`` of its side
    (padding with the background value -1), a different random offset per image."""
    pad = max(1, round(frac * x.shape[-1]))
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    offs = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=gen)
    out = torch.empty_like(x)
    for dy, dx in torch.unique(offs, dim=0).tolist():
        sel = ((offs[:, 0] == dy) & (offs[:, 1] == dx)).nonzero().squeeze(1).to(x.device)
        out[sel] = padded[sel, :, dy : dy + h, dx : dx + w]
    return out


def _crop_boxes(n: int, height: int, width: int, gen: torch.Generator, scale, ratio, attempts: int = 10):
    """torchvision's ``RandomResizedCrop.get_params`` for ``n`` images at once: per image, the
    first of ``attempts`` draws (area fraction uniform in ``scale``, log aspect ratio uniform in
    ``log(ratio)``) whose integer box fits, else the central crop clamped to ``ratio``.
    Returns ``(top, left, h, w)`` as long tensors of length ``n``."""
    area = height * width
    frac = scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=gen, dtype=torch.float64)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, attempts, generator=gen, dtype=torch.float64))
    w = torch.round(torch.sqrt(area * frac * aspect)).long()
    h = torch.round(torch.sqrt(area * frac / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    found = ok.any(1)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), (height - h) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), (width - w) // 2)
    return top, left, h, w


def random_resized_crop_flip(x: torch.Tensor, gen: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                             flip_p: float = 0.5) -> torch.Tensor:
    """The paper's training augmentation on a batch ``B x C x H x W``:
    ``RandomResizedCrop((H, W), scale, ratio)`` then ``RandomHorizontalFlip(flip_p)``, a
    different crop and flip per image, in one ``grid_sample`` on ``x``'s device.

    Each crop box is drawn as torchvision draws it and resized back to ``H x W`` bilinearly at
    torchvision's sampling points (``align_corners=False``, clamped to the box, as
    ``resized_crop`` does; a crop is never larger than the image, so no antialiasing is
    involved)."""
    n, _, height, width = x.shape
    top, left, h, w = (v.double()[:, None] for v in _crop_boxes(n, height, width, gen, scale, ratio))
    flip = (torch.rand(n, generator=gen) < flip_p)[:, None]

    def coords(start, length, side):  # normalised sampling coordinates, n x side
        src = start + (torch.arange(side, dtype=torch.float64) + 0.5) * length / side - 0.5
        src = torch.minimum(torch.maximum(src, start), start + length - 1)
        return (2 * src + 1) / side - 1

    xs = coords(left, w, width)
    xs = torch.where(flip, xs.flip(1), xs)
    ys = coords(top, h, height)
    grid = torch.stack([xs[:, None, :].expand(n, height, width), ys[:, :, None].expand(n, height, width)], dim=-1)
    grid = grid.to(device=x.device, dtype=x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# training augmentations of image batches, chosen by the prepared dataset's meta["augment"]
AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "shift": random_shift,
    "crop_flip": random_resized_crop_flip,
}


def train_augmentation(prep: Prepared) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The augmentation ``(x, gen) -> x`` that ``prep``'s images get in training (``shift``
    when its meta does not say)."""
    name = prep.meta.get("augment", "shift")
    if name not in AUGMENTATIONS:
        raise GrmuError(f"prepared dataset asks for augmentation '{name}'; valid: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]


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


@torch.no_grad()
def predict(model, prep: Prepared, idx: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Logits (float32, CPU) of ``model`` on samples ``idx``, in eval mode."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    for start in range(0, len(idx_t), batch_size):
        x = to_input(prep.inputs[idx_t[start : start + batch_size]], dev)
        out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, prep.n_classes)


def accuracy(model, prep: Prepared, idx: np.ndarray, batch_size: int = 512) -> float:
    if len(idx) == 0:
        return float("nan")
    pred = predict(model, prep, idx, batch_size).argmax(1).numpy()
    return float((pred == prep.y[idx]).mean() * 100)


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
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                opt.step()
                total += float(loss.detach()) * len(b)
                count += len(b)
                step += 1
            row[f"loss_{p.name}"] = total / max(count, 1)
        row["lr"] = base_lrs[0] * lr_factor(cfg, epoch, max(step - 1, 0), max(steps, 1))
        if val_idx is not None:
            row["val_acc"] = accuracy(model, prep, val_idx)
        for name, idx in (watch or {}).items():
            row[f"{name}_acc"] = accuracy(model, prep, idx)
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
