"""SCRUB (Kurmanji et al., 2024) as used in the paper's baselines (fact sheet §5.4, §8.9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from grmu.methods import UnlearnContext, register_method
from grmu.schema import Int, Number


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t/T) || softmax(s/T))`` summed over the batch, times ``T^2 / B``."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="sum")
    return kl * (temperature**2) / student_logits.shape[0]


def forget_loss(teacher, temperature: float):
    """Max step: ``-KL_T(teacher || student)`` on a forget batch (moves away from the teacher)."""

    def loss(model, x, y, g):
        with torch.no_grad():
            t = teacher(x)
        return -kl_to_teacher(model(x), t, temperature)

    return loss


def retain_loss(teacher, temperature: float, alpha: float, gamma: float):
    """Min step: ``alpha * KL_T(teacher || student) + gamma * CE`` on a remaining batch."""

    def loss(model, x, y, g):
        with torch.no_grad():
            t = teacher(x)
        s = model(x)
        return alpha * kl_to_teacher(s, t, temperature) + gamma * F.cross_entropy(s, y)

    return loss


OPTIONS = {  # defaults: the official code's CLI values (fact sheet §5.4)
    "temperature": Number(4.0, "distillation temperature T (--temperature_scrub)", low=0, low_open=True),
    "alpha": Number(0.001, "weight of the KL term in the min step (--alpha_scrub)", low=0),
    "gamma": Number(0.99, "weight of the CE term in the min step (--gamma_scrub)", low=0),
    "forgetting_epochs": Int(5, "epochs with a max step on the forget set (SCRUB's msteps)", low=0),
    "retain_batch_size": Int(128, "batch size of the remaining pass (--batch_size_retain)"),
}


@register_method("scrub", options=OPTIONS)
def scrub(ctx: UnlearnContext):
    """SCRUB: distil from the original model on the remaining set, away from it on the forget set.

    The teacher is the original model (eval mode, no grad); the student starts as a copy.
    ``KL_T = KL(softmax(t/T) || softmax(s/T))`` summed over the batch times ``T^2 / B``.
    Each epoch, with one SGD optimizer shared by both passes:

    * forget pass (max step), only while ``epoch < forgetting_epochs``: loss ``-KL_T`` on
      forget batches of ``unlearn.batch_size``;
    * remaining pass (min step), every epoch: loss ``alpha * KL_T + gamma * CE`` on
      remaining batches of ``retain_batch_size`` (REWEIGHT weights with ``reweight: true``).

    Options: ``OPTIONS`` above (``grmu params methods.scrub``); the paper's FairFace configs use
    ``forgetting_epochs`` 7, and there are no extra min-only steps per max step; the code fixes
    ``retain_batch_size`` at 128 whatever the config batch size (fact sheet §8.9).
    """
    o = ctx.options
    teacher = ctx.original
    forget = ctx.forget_pass(forget_loss(teacher, o["temperature"]))
    remaining = ctx.remaining_pass(
        retain_loss(teacher, o["temperature"], o["alpha"], o["gamma"]), batch_size=o["retain_batch_size"]
    )

    def passes(epoch):
        return ([forget] if epoch < o["forgetting_epochs"] else []) + [remaining]

    return ctx.fit(passes)
