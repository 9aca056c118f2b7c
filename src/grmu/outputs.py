"""A model's outputs on every sample: what each model-building stage saves beside its checkpoint
(``{name}.npz`` for ``{name}.pt``) and the evaluate stages read, so that no model runs there.

The file holds ``logits`` (N x classes, float32), ``loss`` (N, float32: the cross-entropy of each
sample's label in the model's precision, as ``grmu.inference.predictions`` computes it) and
``info`` (the checkpoint's info as JSON). Reading it needs numpy only (no torch), and never
unpickles anything (``allow_pickle=False``).

A diverged model never becomes a result (``check_outputs``): its weights must be finite, its
logits finite and within ``LOGIT_LIMIT`` in magnitude, its losses finite and within what such
logits give. Beyond 1e6, float32 resolves logits to 0.06 or coarser, so predictions and losses
are rounding noise (a softmax saturates at a logit gap of about 100): no sane model gets there,
a model whose weights blew up (one step at a huge lr or SAM rho) does. Saving refuses such a
model before anything is written; reading refuses such a file, so no metric is computed from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.prepared import SPLITS, Prepared

LOGIT_LIMIT = 1e6  # the largest |logit| a saved model may have (see the module's doc)


def loss_limit(n_classes: int) -> float:
    """The largest cross-entropy that logits within ``LOGIT_LIMIT`` can give."""
    return 2 * LOGIT_LIMIT + float(np.log(max(n_classes, 1)))


def check_outputs(logits: np.ndarray, loss: np.ndarray, what: str, fix: str) -> None:
    """Refuse the outputs of a diverged model with one line: ``what`` names the model or file,
    ``fix`` says what to do. Logits or losses that are not finite, or logits beyond
    ``LOGIT_LIMIT`` (losses beyond ``loss_limit``), name the worst value, the bound and how many
    samples have them."""
    n = len(loss)
    bad = ~np.isfinite(logits).all(1) | ~np.isfinite(loss)
    if bad.any():
        raise GrmuError(f"{what}: the model's outputs are not finite on {int(bad.sum())} of {n} samples; {fix}")
    peak = np.abs(logits).max(1) if logits.size else np.zeros(n)
    if (peak > LOGIT_LIMIT).any():
        raise GrmuError(
            f"{what}: the model's logits reach {float(peak.max()):.3g} on {int((peak > LOGIT_LIMIT).sum())} of {n} "
            f"samples, beyond {LOGIT_LIMIT:g} (no sane model's logits are that large: its weights blew up); {fix}"
        )
    limit = loss_limit(logits.shape[1])
    if n and (np.abs(loss) > limit).any():
        raise GrmuError(
            f"{what}: the losses reach {float(np.abs(loss).max()):.3g}, beyond {limit:.3g} (the most that logits "
            f"within {LOGIT_LIMIT:g} give); {fix}"
        )


def check_weights(model, what: str, fix: str) -> None:
    """Refuse a model with a weight or buffer that is not finite (``what``, ``fix``: as
    ``check_outputs``), naming the tensor."""
    import torch

    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise GrmuError(f"{what}: the model's weights {name} are not finite; {fix}")


def outputs_path(checkpoint) -> Path:
    """Where a model's per-sample outputs lie: beside its checkpoint, ``.npz`` for ``.pt``."""
    return Path(checkpoint).with_suffix(".npz")


def save_outputs(path, model, prep: Prepared, batch_size: int, info: dict, what: str) -> None:
    """Run ``model`` on every sample (each split in its own batches, as an evaluation of it
    would) and write ``logits`` (N x classes, float32), ``loss`` (N, float32, the cross-entropy
    in the model's precision) and ``info`` (the checkpoint's info as JSON) to ``path``.

    Weights or outputs of a diverged model (``check_weights``, ``check_outputs``: not finite,
    or logits beyond ``LOGIT_LIMIT``) stop the run here with one line naming ``what``, before
    anything is saved (call this before saving the checkpoint)."""
    from grmu.inference import predictions
    from grmu.runtime import atomic_path

    fix = "the run diverged and nothing was saved: lower the learning rate (or SAM's rho)"
    check_weights(model, what, fix)
    logits = np.full((len(prep.y), prep.n_classes), np.nan, dtype=np.float32)
    _, loss = predictions(model, prep, {s: prep.indices(s) for s in SPLITS}, batch_size, logits)
    check_outputs(logits, loss, what, fix)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, logits=logits, loss=loss, info=np.array(json.dumps(info)))


def load_outputs(path, n_samples: int) -> dict:
    """``{"logits", "loss", "pred", "info"}`` of a model from ``save_outputs``' file ``path``,
    checked to cover the ``n_samples`` prepared samples and to be a sane model's
    (``check_outputs``); never unpickles anything."""
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"missing model outputs: {path} (run the stage that trains the model, e.g. `dvc repro`)")
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {"logits": f["logits"], "loss": f["loss"], "info": json.loads(str(f["info"]))}
        if out["logits"].dtype.kind != "f" or out["loss"].dtype.kind != "f":
            raise ValueError(f"logits ({out['logits'].dtype}) and loss ({out['loss'].dtype}) must be floats")
        if out["logits"].ndim != 2 or out["logits"].shape[0] != n_samples or out["loss"].shape != (n_samples,):
            raise ValueError(
                f"logits {out['logits'].shape} and loss {out['loss'].shape} do not cover the "
                f"{n_samples} prepared samples"
            )
    except Exception as e:  # zipfile, numpy, json raise many types for a damaged or foreign file
        raise GrmuError.wrap(
            f"cannot read model outputs {path} (rerun the stage that makes them, e.g. `dvc repro --force <stage>`)", e
        ) from e
    check_outputs(
        out["logits"],
        out["loss"],
        f"model outputs {path}",
        "a diverged or damaged model: rerun the stage that makes it with a lower learning rate",
    )
    out["pred"] = out["logits"].argmax(1)
    return out
