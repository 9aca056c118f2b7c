"""NegGrad+ (sharp-unlearn's ``NG``, fact sheet §4): descent on the remaining set and ascent on
the forget set in the same step."""

from __future__ import annotations

import torch.nn.functional as F

from grmu.methods import UnlearnContext, register_method
from grmu.schema import Number


# upstream's --alpha default (its RUM scripts use 0.97-0.99); 1 = fine-tuning, 0 = NegGrad
ALPHA = Number(0.99, "weight of the remaining-set CE (1 - alpha on the forget ascent)", low=0, high=1)


def combined_loss(alpha: float):
    """``alpha * CE(remaining batch) - (1 - alpha) * CE(forget batch)``."""

    def loss(model, x, y, g, forget):
        fx, fy, _ = forget
        return alpha * F.cross_entropy(model(x), y) - (1.0 - alpha) * F.cross_entropy(model(fx), fy)

    return loss


@register_method("neggrad_plus", options={"alpha": ALPHA})
def neggrad_plus(ctx: UnlearnContext):
    """NegGrad+ (NG): each step ``alpha * CE(remaining batch) - (1 - alpha) * CE(forget batch)``.

    An epoch is one pass over the remaining set (REWEIGHT weights with ``reweight: true``); each
    remaining batch is paired with the next forget batch, the forget set shuffled once per epoch
    and cycled when it runs out (upstream zips the retain loader with ``itertools.cycle`` of the
    forget loader). Both batches have ``unlearn.batch_size`` samples.

    Upstream's cycle replays the *same augmented* forget batches; here each cycled batch gets a
    fresh augmentation (the draw is seeded, so runs stay reproducible).
    """
    alpha = ctx.options["alpha"]
    p = ctx.remaining_pass(combined_loss(alpha))
    p.partner = ctx.forget_idx
    return ctx.fit(lambda epoch: [p])
