"""SalUn (Fan et al., 2024), the "small-scale" random-labelling variant with a saliency mask
used in the paper's baselines (fact sheet §5.3, §8.8)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from grmu.augment import train_augmentation
from grmu.inference import to_input
from grmu.methods import UnlearnContext, register_method
from grmu.schema import Number

# offsets that keep SalUn's own random streams apart from the training loop's (seeded with seed)
_MASK_STREAM, _LABEL_STREAM = 101, 202


def forget_gradients(ctx: UnlearnContext, seed_offset: int = _MASK_STREAM) -> dict[str, torch.Tensor]:
    """Per-parameter gradient of the CE loss, summed over the batches of the forget set.

    Computed on a copy of the ORIGINAL model in eval mode; batches of ``unlearn.batch_size``
    in a seeded shuffled order, with the dataset's training augmentation when ``unlearn.augment``
    (as the official code, whose forget loader carries the train augmentation). Each
    batch's loss is the batch-mean CE, as in the code. The code back-propagates the negated
    CE; only ``|grad|`` is used, so the sign does not matter.
    """
    net = copy.deepcopy(ctx.original).eval()
    names, params = zip(*net.named_parameters())
    for p in params:
        p.requires_grad_(True)
    dev = params[0].device
    gen = torch.Generator().manual_seed(int(ctx.seed) + seed_offset)
    idx = torch.as_tensor(ctx.forget_idx, dtype=torch.long)
    idx = idx[torch.randperm(len(idx), generator=gen)]
    y_all = torch.as_tensor(ctx.prep.y)
    total = [torch.zeros_like(p) for p in params]
    bs = int(ctx.cfg["batch_size"])
    augment = train_augmentation(ctx.prep) if ctx.cfg.get("augment") else None
    for start in range(0, len(idx), bs):
        b = idx[start : start + bs]
        x = to_input(ctx.prep.inputs[b], dev)
        if augment is not None and x.dim() == 4:
            x = augment(x, gen)
        loss = F.cross_entropy(net(x), y_all[b].to(dev))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for acc, gr in zip(total, grads):
            if gr is not None:
                acc.add_(gr)
    return dict(zip(names, total))


def saliency_mask(grads: dict[str, torch.Tensor], threshold: float, largest: bool = True) -> dict[str, torch.Tensor]:
    """Mask 1 on the top ``int(threshold * N)`` entries of ``|grad|``, ranked globally over all
    ``N`` parameter entries (ties broken by position, deterministically), 0 elsewhere; with
    ``largest=False`` the *smallest* ones (upstream sharp-unlearn's mask, fact sheet S5)."""
    names = list(grads)
    flat = torch.cat([grads[n].detach().abs().flatten() for n in names])
    k = int(threshold * flat.numel())
    keep = torch.zeros_like(flat)
    if k > 0:
        order = torch.argsort(flat, descending=largest, stable=True)
        keep[order[:k]] = 1.0
    out, start = {}, 0
    for n in names:
        size = grads[n].numel()
        out[n] = keep[start : start + size].view_as(grads[n])
        start += size
    return out


class MaskGradients:
    """``after_backward`` hook: multiplies each parameter's gradient by its saliency mask."""

    def __init__(self, mask: dict[str, torch.Tensor]):
        self.mask = mask

    def __call__(self, model) -> None:
        for name, p in model.named_parameters():
            if p.grad is not None:
                p.grad.mul_(self.mask[name])


def random_labels(n_classes: int, gen: torch.Generator, replace=None):
    """``Pass.relabel``: labels drawn uniformly in ``[0, n_classes)`` for a whole batch, fresh for
    every batch (they may equal the true label); with ``replace`` (a boolean array over all
    samples) only the marked samples of the batch take them."""

    def relabel(b, y):
        rand = torch.randint(0, n_classes, y.shape, generator=gen).to(y.device)
        if replace is None:
            return rand
        return torch.where(torch.as_tensor(replace[b.numpy()]).to(y.device), rand, y)

    return relabel


@register_method(
    "salun",
    options={
        # the code's --saliency_threshold; 1 = no mask, i.e. the "random labelling" baseline
        "threshold": Number(
            0.5, "fraction of the weights (largest |forget grad|) that may change", low=0, low_open=True, high=1
        ),
    },
)
def salun(ctx: UnlearnContext):
    """SalUn: random labels on the forget set + fine-tuning, updating only forget-salient weights.

    1. Saliency mask, once, before training: the gradient of the CE loss on the forget set
       is accumulated over all forget batches with the ORIGINAL model in eval mode (the
       official code negates the loss; only ``|grad|`` matters). All parameter entries are
       ranked globally by ``|grad|``; the mask is 1 for the top ``int(threshold * N)`` and 0
       elsewhere.
    2. Each epoch: a pass over the forget set with labels drawn uniformly in ``[0, C)``,
       fresh for every batch and epoch (seeded from the run seed), then a pass over the
       remaining set with the true labels (REWEIGHT weights with ``reweight: true``). Both
       use CE; before every optimizer step the gradients are multiplied by the mask.

    Kept as in the paper's code (fact sheet §8.8): the mask is applied to the *gradients*
    only, so with SGD the masked-out weights still move through weight decay (added inside
    ``step()``) and through momentum. The mask uses the augmented forget batches when
    ``unlearn.augment`` is on, as the code's forget loader does.
    """
    threshold = ctx.options["threshold"]
    mask = saliency_mask(forget_gradients(ctx), threshold)
    dev = next(ctx.model.parameters()).device
    mask = {n: m.to(dev) for n, m in mask.items()}
    gen = torch.Generator().manual_seed(int(ctx.seed) + _LABEL_STREAM)
    forget = ctx.forget_pass(relabel=random_labels(ctx.prep.n_classes, gen))
    return ctx.fit(lambda epoch: [forget, ctx.remaining_pass()], after_backward=MaskGradients(mask))
