"""NegGrad (gradient ascent on the forget set; sharp-unlearn's ``GA``, fact sheet §4)."""

from __future__ import annotations

import torch.nn.functional as F

from grmu.methods import UnlearnContext, register_method


def ascent_loss(model, x, y, g):
    """``-CE``: minimising it raises the forget set's loss."""
    return -F.cross_entropy(model(x), y)


@register_method("neggrad")
def neggrad(ctx: UnlearnContext):
    """NegGrad (GA): minimise ``-CE`` on the forget set only, for ``unlearn.epochs`` epochs.

    The remaining set is never read, so ``reweight`` changes nothing. Upstream suggests a very
    small lr (1e-4, 5 epochs with SGD; sharp-unlearn runs it with AdamW): the ascent has no
    floor and a large lr destroys the model (a diverged loss stops the run). With ``unlearn.sam``
    each ascent step is a SAM step.
    """
    return ctx.fit(lambda epoch: [ctx.forget_pass(ascent_loss)])
