"""Running a model on prepared samples: the one place where grmu does inference.

``predict`` gives logits in eval mode (restoring the model's mode afterwards);
``predictions`` gives the predicted class and per-sample cross-entropy of named index sets,
as full-length arrays for the pure metric formulas in ``grmu.metrics``. Every model-building
stage saves its model's outputs on every sample (``save_outputs``: logits and loss, with the
checkpoint's info) beside the checkpoint; the evaluate stages read them back (``load_outputs``)
and never run a model. A model whose
``precision`` is ``bf16`` runs under bf16 autocast (``autocast``), and its losses are computed
in bf16 from its bf16 logits, as the official code's (so the MIA sees bf16-rounded losses).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from grmu import GrmuError
from grmu.prepared import SPLITS, Prepared


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


def outputs_path(checkpoint) -> Path:
    """Where a model's per-sample outputs lie: beside its checkpoint, ``.npz`` for ``.pt``."""
    return Path(checkpoint).with_suffix(".npz")


def save_outputs(path, model, prep: Prepared, batch_size: int, info: dict, what: str) -> None:
    """Run ``model`` on every sample (each split in its own batches, as an evaluation of it
    would) and write ``logits`` (N x classes, float32), ``loss`` (N, float32, the cross-entropy
    in the model's precision) and ``info`` (the checkpoint's info as JSON) to ``path``.

    Outputs that are not finite mean a diverged model: the run stops here with one line naming
    ``what``, before anything is saved (call this before saving the checkpoint)."""
    from grmu.runtime import atomic_path

    logits = np.full((len(prep.y), prep.n_classes), np.nan, dtype=np.float32)
    _, loss = predictions(model, prep, {s: prep.indices(s) for s in SPLITS}, batch_size, logits)
    if not (np.isfinite(logits).all() and np.isfinite(loss).all()):
        bad = int((~np.isfinite(logits).all(1) | ~np.isfinite(loss)).sum())
        raise GrmuError(
            f"{what}: the model's outputs are not finite on {bad} of {len(loss)} samples; the run "
            "diverged and nothing was saved: lower the learning rate"
        )
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, logits=logits, loss=loss, info=np.array(json.dumps(info)))


def load_outputs(path, n_samples: int) -> dict:
    """``{"logits", "loss", "pred", "info"}`` of a model from ``save_outputs``' file ``path``,
    checked to cover the ``n_samples`` prepared samples (never unpickles anything)."""
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"missing model outputs: {path} (run the stage that trains the model, e.g. `dvc repro`)")
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {"logits": f["logits"], "loss": f["loss"], "info": json.loads(str(f["info"]))}
        if out["logits"].ndim != 2 or out["logits"].shape[0] != n_samples or out["loss"].shape != (n_samples,):
            raise ValueError(
                f"logits {out['logits'].shape} and loss {out['loss'].shape} do not cover the "
                f"{n_samples} prepared samples"
            )
    except Exception as e:  # zipfile, numpy, json raise many types for a damaged or foreign file
        raise GrmuError.wrap(
            f"cannot read model outputs {path} (rerun the stage that makes them, e.g. `dvc repro --force <stage>`)", e
        ) from e
    out["pred"] = out["logits"].argmax(1)
    return out
