"""Random labelling (sharp-unlearn's ``RL_og``, fact sheet §4): SalUn without the mask."""

from __future__ import annotations

import numpy as np
import torch

from grmu.methods import UnlearnContext, register_method
from grmu.methods.salun import random_labels
from grmu.train import Pass

_LABEL_STREAM = 303  # keeps the label draws apart from the training loop's stream


@register_method("random_label")
def random_label(ctx: UnlearnContext):
    """Random labels: forget samples with uniformly random labels, trained together with the remaining set.

    Each epoch is one shuffled pass over forget ∪ remaining with CE; every forget sample gets a
    label drawn uniformly in ``[0, C)`` each time it is drawn (it may equal the true one;
    upstream draws them once per epoch, the same thing when each sample is drawn once). No
    saliency mask: every weight may change (SalUn = this with a mask, and with separate forget
    and remaining passes in grmu's ``salun``, as the group-robust paper's code).

    With ``reweight: true`` the pass is drawn with replacement: forget samples with weight 1,
    remaining samples with their REWEIGHT weights, so the remaining part keeps the training
    set's group proportions.
    """
    idx = np.concatenate([ctx.forget_idx, ctx.remaining_idx])
    rw = ctx.remaining_weights()
    weights = None if rw is None else np.concatenate([np.ones(len(ctx.forget_idx)), rw])
    is_forget = np.zeros(len(ctx.prep.y), dtype=bool)
    is_forget[ctx.forget_idx] = True
    gen = torch.Generator().manual_seed(int(ctx.seed) + _LABEL_STREAM)
    p = Pass(
        "mixed",
        idx,
        batch_size=ctx.cfg["batch_size"],
        weights=weights,
        relabel=random_labels(ctx.prep.n_classes, gen, replace=is_forget),
    )
    return ctx.fit(lambda epoch: [p])
