"""Sharp MinMax, the sharpness-aware unlearning method of Tang & Khanna (sharp-unlearn's
``NG --separate min max``, fact sheet §4, §6.1)."""

from __future__ import annotations

import torch.nn.functional as F

from grmu import GrmuError
from grmu.methods import UnlearnContext, register_method
from grmu.methods.neggrad_plus import ALPHA
from grmu.methods.salun import MaskGradients, forget_gradients, saliency_mask
from grmu.sam import active as sam_active
from grmu.schema import SAM_MODES, Bool, Choice, Number
from grmu.train import Step, make_optimizer

MASK_ORDERS = ("largest", "smallest")


def retain_loss(alpha: float):
    def loss(model, x, y, g, forget):
        return alpha * F.cross_entropy(model(x), y)

    return loss


def forget_loss(alpha: float):
    def loss(model, x, y, g, forget):
        fx, fy, _ = forget
        return -(1.0 - alpha) * F.cross_entropy(model(fx), fy)

    return loss


def masked_step(loss, optimizer, sam: dict, mask: dict, leak: bool) -> Step:
    """An update whose gradient is multiplied by ``mask``: after SAM has combined ``g`` and
    ``g_adv`` (exact), or with ``leak`` on ``g_adv`` only, before the combination (upstream)."""
    hook = MaskGradients(mask)
    if leak and sam_active(sam):
        return Step(loss, optimizer, sam, before_combine=hook)
    return Step(loss, optimizer, sam, after_backward=hook)


def check_cfg(cfg: dict) -> None:
    if sam_active(cfg["sam"]):
        raise GrmuError(
            f"unlearn.sam.mode '{cfg['sam']['mode']}' is not used by sharp_minmax: its SAM modes are "
            "methods.sharp_minmax.retain_sam and forget_sam (unlearn.sam gives rho, lamb, adaptive); "
            "set unlearn.sam.mode: none"
        )


@register_method(
    "sharp_minmax",
    options={
        "alpha": ALPHA,  # upstream's default
        # upstream generates masks at 0.1, 0.3 and 0.5 and does not say which the paper's tables use
        "threshold": Number(
            0.5,
            "fraction of the weights in the saliency mask (forget-step weights)",
            low=0,
            low_open=True,
            high=1,
            high_open=True,
        ),
        "retain_sam": Choice("min", "SAM mode of the remaining step (upstream --separate min max)", SAM_MODES),
        "forget_sam": Choice("max", "SAM mode of the forget step", SAM_MODES),
        "mask_order": Choice("largest", "largest (the paper's intent) | smallest (upstream's code, S5)", MASK_ORDERS),
        "mask_leak": Bool(False, "true = upstream masks g_adv before the SAM combination"),
    },
)
def sharp_minmax(ctx: UnlearnContext):
    """Sharp MinMax: SAM-min on remaining data moves unmasked weights, SAM-max on forget data masked ones.

    1. Mask, once: ``|grad|`` of the forget-set CE of the ORIGINAL model (eval mode, summed over
       forget batches, as SalUn's), ranked globally; the mask holds the ``threshold`` fraction
       with the largest values.
    2. Each epoch is one pass over the remaining set (REWEIGHT weights with ``reweight: true``),
       each batch paired with the next forget batch (forget set shuffled per epoch and cycled,
       as NegGrad+). Per pair, two updates with two optimizers (``unlearn.optimizer``, each over
       all weights with its own state; the recipes use AdamW as upstream):

       * remaining: loss ``alpha * CE(remaining batch)``, a ``retain_sam`` step (SAM-min),
         gradient multiplied by ``1 - mask``;
       * forget, at the weights just updated: loss ``-(1 - alpha) * CE(forget batch)``, a
         ``forget_sam`` step (SAM-max: ``grad = g - lamb * (g_adv - g)``), gradient multiplied
         by ``mask``.

       ``rho``, ``lamb`` and ``adaptive`` come from ``unlearn.sam`` (whose ``mode`` must stay
       none: the modes are this method's options).

    Options (declared above, ``grmu params methods.sharp_minmax``): ``mask_order: smallest``
    reproduces upstream's mask, which lacks SalUn's sign flip and marks the weights with the
    *smallest* forget gradients (fact sheet S5). ``mask_leak: true`` reproduces upstream, which
    masks ``g_adv`` before the SAM combination, so with SAM-max the weights outside the mask
    still receive ``(1 + lamb) g`` (fact sheet §4 "Leak"); false masks the final gradient, the
    paper's intent.

    As in upstream, weight decay (applied by each optimizer) still shrinks masked-out weights,
    twice per pair.
    """
    check_cfg(ctx.cfg)
    o = ctx.options
    mask = saliency_mask(forget_gradients(ctx), o["threshold"], largest=o["mask_order"] == "largest")
    dev = next(ctx.model.parameters()).device
    mask = {n: m.to(dev) for n, m in mask.items()}
    keep = {n: 1.0 - m for n, m in mask.items()}
    opt_r = make_optimizer(ctx.model.parameters(), ctx.cfg)
    opt_f = make_optimizer(ctx.model.parameters(), ctx.cfg)
    sam = ctx.cfg["sam"]
    p = ctx.remaining_pass()
    p.partner = ctx.forget_idx
    p.steps = [
        masked_step(retain_loss(o["alpha"]), opt_r, {**sam, "mode": o["retain_sam"]}, keep, o["mask_leak"]),
        masked_step(forget_loss(o["alpha"]), opt_f, {**sam, "mode": o["forget_sam"]}, mask, o["mask_leak"]),
    ]
    return ctx.fit(lambda epoch: [p], optimizer=opt_r)
