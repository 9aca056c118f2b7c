"""Running a model on prepared samples: the one place where grmu does inference.

``predict`` gives logits in eval mode (restoring the model's mode afterwards);
``predictions`` gives the predicted class and per-sample cross-entropy of named index sets,
as full-length arrays for the pure metric formulas in ``grmu.metrics`` (and for the outputs
that every model-building stage saves, ``grmu.outputs``). A model whose
``precision`` is ``bf16`` runs under bf16 autocast (``autocast``), and its losses are computed
in bf16 from its bf16 logits, as the official code's (so the MIA sees bf16-rounded losses).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from grmu.prepared import Prepared


def autocast(model):
    """bf16 autocast on the model's device when ``model.precision`` is ``bf16``, else a no-op."""
    dev = next(model.parameters()).device
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=getattr(model, "precision", "fp32") == "bf16")


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Image batches on a GPU in channels-last layout (cuDNN's fast bf16 convolutions pick it
    up from the input); the values are the same, CPU batches are left as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.dim() == 4 else x


def to_input(batch: torch.Tensor, device) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] (mean = std = 0.5, as in the paper); ids pass through."""
    batch = batch.to(device, non_blocking=True)
    if batch.dtype == torch.uint8:
        return channels_last(batch.float().div_(127.5).sub_(1.0))
    return batch


@torch.no_grad()
def predict(model, prep: Prepared, idx: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Logits (float32, CPU) of ``model`` on samples ``idx``, in eval mode."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    for start in range(0, len(idx_t), batch_size):
        x = to_input(prep.inputs[idx_t[start : start + batch_size]], dev)
        with autocast(model):
            out.append(model(x).float().cpu())  # bf16 logits are exact in float32
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, prep.n_classes)


def model_accuracy(model, prep: Prepared, idx: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy (x100) of ``model`` on samples ``idx``; NaN on an empty set. (The training
    loop's validation accuracy: the formula of ``grmu.metrics.accuracy``, not imported from there
    so that a change of the evaluation formulas does not rerun every training stage.)"""
    if len(idx) == 0:
        return float("nan")
    pred = predict(model, prep, idx, batch_size).argmax(1).numpy()
    return float((pred == prep.y[idx]).mean() * 100)


def predictions(model, prep: Prepared, sets: dict[str, np.ndarray], batch_size: int = 512, logits_out=None):
    """``(pred, loss)``: length-N arrays (N = all samples) holding, for every sample of the
    index sets in ``sets``, the predicted class and the cross-entropy of its label; -1 and NaN
    elsewhere. Each set is predicted on its own, in its own batches. ``logits_out`` (an
    N x classes array), when given, receives the logits of those samples."""
    n = len(prep.y)
    pred, loss = np.full(n, -1, dtype=np.int64), np.full(n, np.nan, dtype=np.float32)
    bf16 = getattr(model, "precision", "fp32") == "bf16"
    for idx in sets.values():
        logits = predict(model, prep, idx, batch_size)
        pred[idx] = logits.argmax(1).numpy()
        if logits_out is not None:
            logits_out[idx] = logits.numpy()
        if bf16:  # back to the bf16 logits (exact), the loss computed in bf16
            logits = logits.to(torch.bfloat16)
        ce = F.cross_entropy(logits, torch.as_tensor(prep.y[idx]), reduction="none")
        loss[idx] = ce.float().numpy()
    return pred, loss
