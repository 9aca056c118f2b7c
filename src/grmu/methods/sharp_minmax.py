"""Sharp MinMax, the sharpness-aware unlearning method of Tang & Khanna (sharp-unlearn's
``NG --separate min max``, fact sheet §4, §6.1)."""
from __future__ import annotations

import torch.nn.functional as F

from grmu import GrmuError
from grmu.config import SAM_MODES
from grmu.methods import UnlearnContext, bool_option, choice_option, number_option, register_method
from grmu.methods.neggrad_plus import check_alpha
from grmu.methods.salun import MaskGradients, forget_gradients, saliency_mask
from grmu.sam import active as sam_active
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


def check_options(ctx: UnlearnContext) -> dict:
    opts = ctx.options
    if sam_active(ctx.cfg["sam"]):
        raise GrmuError(f"unlearn.sam.mode '{ctx.cfg['sam']['mode']}' is not used by sharp_minmax: its SAM modes are "
                        "methods.sharp_minmax.retain_sam and forget_sam (unlearn.sam gives rho, lamb, adaptive); "
                        "set unlearn.sam.mode: none")
    return {
        "alpha": check_alpha("sharp_minmax", opts),
        "threshold": number_option("sharp_minmax", opts, "threshold", "a number in (0, 1)", lambda v: 0 < v < 1),
        "retain_sam": choice_option("sharp_minmax", opts, "retain_sam", SAM_MODES),
        "forget_sam": choice_option("sharp_minmax", opts, "forget_sam", SAM_MODES),
        "mask_order": choice_option("sharp_minmax", opts, "mask_order", MASK_ORDERS),
        "mask_leak": bool_option("sharp_minmax", opts, "mask_leak"),
    }


@register_method("sharp_minmax", options={"alpha": 0.99, "threshold": 0.5, "retain_sam": "min", "forget_sam": "max",
                                          "mask_order": "largest", "mask_leak": False})
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

    Options:

    * ``alpha`` (0.99, upstream's default): weight of the remaining term, in [0, 1].
    * ``threshold`` (0.5): fraction of the weights in the mask, in (0, 1). Upstream generates
      masks at 0.1, 0.3 and 0.5 and does not say which the paper's tables use.
    * ``retain_sam`` / ``forget_sam`` (min / max, upstream ``--separate min max``): the SAM mode
      of each update: none, min or max.
    * ``mask_order`` (largest): ``smallest`` reproduces upstream's mask, which lacks SalUn's sign
      flip and marks the weights with the *smallest* forget gradients (fact sheet S5).
    * ``mask_leak`` (false): ``true`` reproduces upstream, which masks ``g_adv`` before the SAM
      combination, so with SAM-max the weights outside the mask still receive ``(1 + lamb) g``
      (fact sheet §4 "Leak"); false masks the final gradient, the paper's intent.

    As in upstream, weight decay (applied by each optimizer) still shrinks masked-out weights,
    twice per pair.
    """
    o = check_options(ctx)
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
