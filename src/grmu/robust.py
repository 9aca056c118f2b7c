"""Group-robust training pieces: the REWEIGHT sampler weights and Group-DRO."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from grmu import GrmuError, distributed
from grmu.distributed import all_sum
from grmu.sam import at_perturbed_point


def reweight_weights(g_train: np.ndarray, g_remaining: np.ndarray, n_groups: int) -> np.ndarray:
    """REWEIGHT (paper §3.3): per-sample weight ``alpha_g = n_train[g] / n_remaining[g]``.

    Sampling ``|remaining|`` draws with replacement with these weights gives every epoch the
    group distribution of the *original* training set: the forget group's survivors are
    drawn about ``1 / (1 - r)`` times as often; untouched groups keep weight 1.
    """
    n_train = np.bincount(g_train, minlength=n_groups).astype(np.float64)
    n_rem = np.bincount(g_remaining, minlength=n_groups).astype(np.float64)
    alpha = np.divide(n_train, n_rem, out=np.zeros(n_groups), where=n_rem > 0)
    return alpha[g_remaining]


def group_balanced_weights(g: np.ndarray, n_groups: int) -> np.ndarray:
    """Group-DRO sampler: weight ``N / n_g`` per sample, so each group is drawn equally often."""
    counts = np.bincount(g, minlength=n_groups).astype(np.float64)
    return len(g) / counts[g]


class GroupDRO:
    """Group-DRO loss (Sagawa et al. 2020), as in the paper's RETRAIN+Group-DRO.

    Per step: ``L_g`` = mean CE over the batch samples of group g (0 for absent groups);
    ``q <- q * exp(eta * L_g)``, normalised; loss = ``sum_g q_g * L_g``. ``q`` starts uniform
    and persists across steps. With SAM, ``q`` is updated on the first pass of a batch only (the
    perturbed point's loss uses the updated ``q`` without moving it again). Under DDP
    (``grmu.distributed``) the group counts and losses are those of the global batch.
    """

    def __init__(self, n_groups: int, eta: float):
        if eta <= 0:
            raise GrmuError(f"gdro.eta must be > 0, got {eta!r}")
        self.n_groups = n_groups
        self.eta = float(eta)
        self.q = torch.full((n_groups,), 1.0 / n_groups)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        per_sample = F.cross_entropy(logits, y, reduction="none")
        one_hot = F.one_hot(g, self.n_groups).to(per_sample.dtype)
        counts = all_sum(one_hot.sum(0))  # under DDP: of the global batch (grmu.distributed)
        sums = (one_hot * per_sample[:, None]).sum(0)
        group_loss = sums / counts.clamp(min=1)
        if not at_perturbed_point():
            global_loss = all_sum(sums.detach()) / counts.clamp(min=1) if distributed.active() else group_loss.detach()
            q = self.q.to(group_loss.device) * torch.exp(self.eta * global_loss)
            self.q = (q / q.sum()).detach()
        loss = (self.q * group_loss).sum()
        if distributed.active():  # this process's part of the global loss, as a mean over its samples
            loss = loss * (counts.sum() / max(len(y), 1))
        return loss
