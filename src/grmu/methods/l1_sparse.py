"""L1-sparse unlearning (Jia et al., 2023), as used in the paper's baselines (fact sheet §5.2)."""

from __future__ import annotations

import torch.nn.functional as F

from grmu.methods import UnlearnContext, register_method
from grmu.schema import Number


def l1_norm(model):
    """``||theta||_1`` over every parameter (conv, BN affine, biases, head); buffers excluded."""
    return sum(p.abs().sum() for p in model.parameters())


def penalty_weight(gamma: float, epoch: int, epochs: int) -> float:
    """``gamma_e = gamma * (1 - e / E)``: constant within an epoch, last epoch ``gamma / E``."""
    return gamma * (1.0 - epoch / epochs)


def l1_loss(gamma_e: float):
    """Remaining-set loss of one epoch: ``CE + gamma_e * ||theta||_1``."""

    def loss(model, x, y, g):
        return F.cross_entropy(model(x), y) + gamma_e * l1_norm(model)

    return loss


@register_method(
    "l1_sparse",
    options={
        # the official code's --l1_penalty for every dataset; 0 gives plain fine-tuning
        "gamma": Number(5e-4, "initial L1 weight, decayed linearly per epoch", low=0),
    },
)
def l1_sparse(ctx: UnlearnContext):
    """L1-sparse: fine-tune on the remaining set with CE + a linearly decaying L1 penalty on all weights.

    Loss per remaining batch: ``CE + gamma_e * ||theta||_1``, the L1 norm over *all*
    parameters (conv, BN, biases, head). ``gamma_e = gamma * (1 - e / E)`` with ``e`` the
    0-based epoch and ``E = unlearn.epochs``, constant within an epoch, so the last epoch
    still uses ``gamma / E`` (never 0).

    The decay per *epoch* is the official code's behaviour (fact sheet §5.2, §8.10); the
    paper (after Jia et al.) describes a per-*iteration* linear decay. With ``reweight: true``
    the remaining set is drawn with REWEIGHT weights.
    """
    gamma = ctx.options["gamma"]
    epochs = int(ctx.cfg["epochs"])
    return ctx.fit(lambda epoch: [ctx.remaining_pass(l1_loss(penalty_weight(gamma, epoch, epochs)))])
