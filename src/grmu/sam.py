"""SAM / ASAM as a gradient transform inside the one training loop (sharp-unlearn fact sheet §1).

Settings (``train.sam`` for PRETRAIN/RETRAIN, ``unlearn.sam`` for any unlearning method)::

    mode: none | min | max   # none = plain training (the loop is unchanged, byte for byte)
    rho: 0.1                 # radius of the perturbation
    lamb: 1.0                # weight of the sharpness term (1 with min = plain SAM)
    adaptive: false          # ASAM: the perturbation scaled by |w|

One step, after the first backward has left ``g = grad L(w)`` in ``.grad``:

1. ``N = ||s * g||`` over every parameter with a gradient at once (one global norm), with
   ``s = |w|`` for ASAM and 1 otherwise; ``eps = rho * s^2 * g / (N + 1e-12)``; ``w <- w + eps``.
2. The loss of the **same batch** (same inputs, labels and augmentation) at ``w + eps`` is
   back-propagated to ``g_adv``; BatchNorm layers keep their running statistics during this
   pass (momentum 0), so only the first pass updates them.
3. ``grad <- g + sigma * lamb * (g_adv - g)`` with ``sigma = +1`` for ``min`` and ``-1`` for
   ``max``; the weights are restored bit for bit; the base optimizer then takes its step (weight
   decay is applied there).

``min`` with ``lamb = 1`` gives ``grad = g_adv`` (SAM); ``max`` with ``lamb = 1`` gives
``2g - g_adv`` (sharpness maximisation). Each SAM step costs a second forward/backward pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable

from grmu import GrmuError

if TYPE_CHECKING:  # torch is imported where it is used: reports read sam_tag without it
    import torch

# true while the loss is recomputed at the perturbed point: a loss with state (Group-DRO's q)
# updates it once per batch, on the first pass only
_PERTURBED = ContextVar("sam_perturbed", default=False)


def at_perturbed_point() -> bool:
    return _PERTURBED.get()


def active(cfg: dict | None) -> bool:
    return bool(cfg) and cfg.get("mode", "none") != "none"


def sam_tag(cfg: dict | None) -> str:
    """A short label of SAM settings for reports: ``plain``, ``SAM-min rho=0.1`` or
    ``ASAM-max rho=1 lamb=0.5`` (lamb shown when it is not 1)."""
    if not active(cfg):
        return "plain"
    lamb = "" if float(cfg["lamb"]) == 1.0 else f" lamb={float(cfg['lamb']):g}"
    return f"{'ASAM' if cfg['adaptive'] else 'SAM'}-{cfg['mode']} rho={float(cfg['rho']):g}{lamb}"


@contextmanager
def bn_stats_frozen(model):
    """BatchNorm layers with momentum 0 inside the block (running stats kept), restored after."""
    import torch

    saved = []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def sam_gradient(
    model, closure: Callable[[], torch.Tensor], cfg: dict, before_combine: Callable | None = None
) -> torch.Tensor:
    """Replace the gradients in ``model`` (``g``, from the first backward) by the SAM gradient.

    ``closure()`` recomputes the loss of the same batch. ``before_combine(model)``, when given,
    runs on ``g_adv`` before the combination (how upstream's Sharp MinMax applies its mask,
    fact sheet §4 "Leak"). Returns the loss at the perturbed point (detached)."""
    import torch

    sigma = 1.0 if cfg["mode"] == "min" else -1.0
    lamb, rho = float(cfg["lamb"]), float(cfg["rho"])
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        raise GrmuError("SAM: no parameter has a gradient after the first backward pass")
    g = [p.grad.detach().clone() for p in params]
    w_old = [p.detach().clone() for p in params]
    with torch.no_grad():
        scaled = [(p.abs() * gi) if cfg["adaptive"] else gi for p, gi in zip(params, g)]
        norm = torch.norm(torch.stack([s.norm(p=2) for s in scaled]), p=2)
        for p, gi in zip(params, g):
            e = gi * (p * p if cfg["adaptive"] else 1.0) * (rho / (norm + 1e-12))
            p.add_(e)
    for p in model.parameters():
        p.grad = None
    token = _PERTURBED.set(True)
    try:
        with bn_stats_frozen(model):
            loss = closure()
            loss.backward()
    finally:
        _PERTURBED.reset(token)
    if before_combine is not None:
        before_combine(model)
    with torch.no_grad():
        for p, gi, w in zip(params, g, w_old):
            adv = p.grad if p.grad is not None else torch.zeros_like(gi)
            p.grad = gi + sigma * lamb * (adv - gi)
            p.copy_(w)
    return loss.detach()
