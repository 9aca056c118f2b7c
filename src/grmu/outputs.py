"""A model's outputs on every sample: what each model-building stage saves beside its checkpoint
(``{name}.npz`` for ``{name}.pt``) and the evaluate stages read, so that no model runs there.

The file holds ``logits`` (N x classes, float32), ``loss`` (N, float32: the cross-entropy of each
sample's label in the model's precision, as ``grmu.inference.predictions`` computes it) and
``info`` (the checkpoint's info as JSON). Reading it needs numpy only (no torch), and never
unpickles anything (``allow_pickle=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.prepared import SPLITS, Prepared


def outputs_path(checkpoint) -> Path:
    """Where a model's per-sample outputs lie: beside its checkpoint, ``.npz`` for ``.pt``."""
    return Path(checkpoint).with_suffix(".npz")


def save_outputs(path, model, prep: Prepared, batch_size: int, info: dict, what: str) -> None:
    """Run ``model`` on every sample (each split in its own batches, as an evaluation of it
    would) and write ``logits`` (N x classes, float32), ``loss`` (N, float32, the cross-entropy
    in the model's precision) and ``info`` (the checkpoint's info as JSON) to ``path``.

    Outputs that are not finite mean a diverged model: the run stops here with one line naming
    ``what``, before anything is saved (call this before saving the checkpoint)."""
    from grmu.inference import predictions
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
