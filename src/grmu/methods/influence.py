"""Influence unlearning (IU) with the WoodFisher inverse-Fisher approximation (sharp-unlearn's
``wfisher``, fact sheet §4)."""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from grmu.inference import to_input
from grmu.methods import UnlearnContext, register_method
from grmu.schema import Choice, Int, Number


def flat_grad(model, x, y) -> torch.Tensor:
    """Gradient of the batch-mean CE with respect to every parameter, flattened into one vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    return torch.cat([g.reshape(-1) for g in grads])


def summed_grad(model, prep, idx: np.ndarray, batch_size: int, weights: np.ndarray | None = None) -> torch.Tensor:
    """``sum_i w_i * grad CE(x_i)`` over ``idx`` in order (w = 1 without ``weights``), computed
    as batch-mean gradients times the batch's total weight when the weights are equal."""
    dev = next(model.parameters()).device
    total = None
    y_all = torch.as_tensor(prep.y)
    for start in range(0, len(idx), batch_size):
        b = torch.as_tensor(idx[start : start + batch_size], dtype=torch.long)
        x, y = to_input(prep.inputs[b], dev), y_all[b].to(dev)
        if weights is None:
            g = flat_grad(model, x, y) * len(b)
        else:
            w = torch.as_tensor(weights[start : start + batch_size], dtype=torch.float32, device=dev)
            params = [p for p in model.parameters() if p.requires_grad]
            loss = (F.cross_entropy(model(x), y, reduction="none") * w).sum()
            g = torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(loss, params)])
        total = g if total is None else total + g
    return total


def woodfisher_product(sample_grads, v: torch.Tensor, n: int) -> torch.Tensor:
    """WoodFisher estimate of ``F^-1 v`` from per-sample gradients (upstream's recursion).

    The first gradient sets ``o = g``; for each later ``g``:
    ``k <- k - (k.g / (n + o.g)) o`` then ``o <- o - (o.g / (n + o.g)) o``, with ``k`` starting
    at ``v``. Returns ``k``.
    """
    k, o = v.clone(), None
    for g in sample_grads:
        if o is None:
            o = g.clone()
            continue
        og = torch.dot(o, g)
        k -= (torch.dot(k, g) / (n + og)) * o
        o -= (og / (n + og)) * o
    return k


def woodbury_product(sample_grads, v: torch.Tensor, n: int) -> torch.Tensor:
    """Exact ``F^-1 v`` for ``F = I + (1/n) sum_j g_j g_j^T`` over all the given gradients, by the
    Woodbury identity ``F^-1 v = v - G^T (n I + G G^T)^-1 G v`` (``G``: one gradient per row).
    Holds every gradient in memory (samples x parameters)."""
    G = torch.stack(list(sample_grads)).to(torch.float64)
    v64 = v.to(torch.float64)
    inner = n * torch.eye(G.shape[0], dtype=torch.float64, device=G.device) + G @ G.T
    return (v64 - G.T @ torch.linalg.solve(inner, G @ v64)).to(v.dtype)


FISHER = {"upstream": woodfisher_product, "woodbury": woodbury_product}


@register_method(
    "influence",
    options={
        "alpha": Number(1.0, "scale of the one-shot update (upstream tunes it per experiment)"),
        "fisher_samples": Int(1000, "per-sample gradients in the Fisher estimate (upstream N = 1000)", low=2),
        "fisher": Choice(
            "upstream", "upstream (the code's cheap recursion) | woodbury (exact, holds every gradient)", FISHER
        ),
    },
)
def influence(ctx: UnlearnContext):
    """Influence unlearning: one Newton-like step ``theta <- theta + alpha * F^-1 v`` (no epochs).

    With the model in eval mode and CE losses (no augmentation), ``n_f``/``n_r`` the forget and
    remaining sizes:

    * ``v = g_f - g_r`` with ``g_f = sum_forget grad / (n_f + n_r)`` and
      ``g_r = sum_remaining grad * n_f / ((n_f + n_r) * n_r)``;
    * ``F^-1 v`` by the WoodFisher recursion (``woodfisher_product``) over the per-sample
      gradients of the first ``fisher_samples + 2`` remaining samples in index order, with
      ``n = fisher_samples`` in the denominators (upstream: N = 1000, batch size 1, unshuffled,
      stopping after index N + 1);
    * ``theta += alpha * F^-1 v`` on every parameter.

    ``unlearn.epochs``, ``lr`` and the optimizer are not used; ``unlearn.batch_size`` only
    batches the summed gradients. With ``reweight: true``, ``g_r`` sums the remaining gradients
    with their REWEIGHT weights (normalised to sum ``n_r``).

    Options (declared above, ``grmu params methods.influence``): ``fisher: upstream`` is the
    fact sheet's recursion, cheap (two vectors) but
      exact only when the per-sample gradients are parallel: it carries one vector ``o`` where
      WoodFisher needs ``F_(j-1)^-1 g_j`` for every sample, and the first sample only seeds ``o``.
      ``woodbury`` computes ``(I + (1/n) sum g g^T)^-1 v`` exactly over all the samples, holding
      them in memory (samples x parameters floats: fine for small models, 44 GB for ResNet-18
      with 1,000 samples).
    """
    o = ctx.options
    model = ctx.model
    model.eval()
    bs = int(ctx.cfg["batch_size"])
    n_f, n_r = len(ctx.forget_idx), len(ctx.remaining_idx)
    w = ctx.remaining_weights()
    if w is not None:
        w = w * (n_r / w.sum())
    g_f = summed_grad(model, ctx.prep, ctx.forget_idx, bs) / (n_f + n_r)
    g_r = summed_grad(model, ctx.prep, ctx.remaining_idx, bs, w) * (n_f / ((n_f + n_r) * n_r))
    dev = g_f.device
    y_all = torch.as_tensor(ctx.prep.y)
    fisher_idx = ctx.remaining_idx[: o["fisher_samples"] + 2]

    def sample_grads():
        for i in tqdm(fisher_idx, desc=f"influence s{ctx.seed}", unit="sample", leave=False):
            b = torch.as_tensor([i], dtype=torch.long)
            yield flat_grad(model, to_input(ctx.prep.inputs[b], dev), y_all[b].to(dev))

    step = FISHER[o["fisher"]](sample_grads(), g_f - g_r, o["fisher_samples"]) * o["alpha"]
    with torch.no_grad():
        start = 0
        for p in (p for p in model.parameters() if p.requires_grad):
            p.add_(step[start : start + p.numel()].view_as(p))
            start += p.numel()
    if ctx.live is not None:
        ctx.live.log_metric("update_norm", float(step.norm()))
        ctx.live.next_step()
    return model
