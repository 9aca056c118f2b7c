"""A throwaway method and dataset, registered through the public decorators only, as a new
method's or dataset's file would be. ``tests/test_registries.py`` loads this module as a pytest
plugin (``python -m pytest -p tests.plugins.throwaway ...``), so that both are registered before
the test modules are collected, and shows that the generic tests (which enumerate the
registries) then run on them, without naming them anywhere.

Never imported by the normal test session: the names start with ``_`` and have no params.yaml
block, so the checks that every registered method and dataset is documented there would fail.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from grmu.data import register_dataset
from grmu.methods import UnlearnContext, register_method
from grmu.schema import Number

METHOD, DATASET = "_throwaway", "_throwaway_ds"


@register_method(
    METHOD,
    options={"label_smoothing": Number(0.0, "label smoothing of the cross-entropy", low=0, high=1, high_open=True)},
)
def throwaway(ctx: UnlearnContext):
    """Throwaway test method: fine-tune on the remaining set with label-smoothed cross-entropy."""
    smoothing = ctx.options["label_smoothing"]

    def loss(model, x, y, g):
        return F.cross_entropy(model(x), y, label_smoothing=smoothing)

    return ctx.fit(lambda epoch: [ctx.remaining_pass(loss)])


# (split, y, a) -> samples: every group in every split, a small (y=1, a=0) group in train
COUNTS = {(split, y, a): 6 for split in ("train", "val", "test") for y in (0, 1) for a in (0, 1)}
COUNTS["train", 1, 0] = 3


@register_dataset(DATASET, options=(), forget_groups=[[1, 0]])
def build(options, data_dir):
    """Throwaway test dataset: 3x8x8 random images, y in the red channel, a in the green one."""
    import pandas as pd
    import torch

    rows = [key for key, n in COUNTS.items() for _ in range(n)]
    split, y, a = (np.array(col) for col in zip(*rows))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 96, (len(rows), 3, 8, 8), dtype=np.uint8)
    images[:, 0] += (128 * y).astype(np.uint8)[:, None, None]
    images[:, 1] += (128 * a).astype(np.uint8)[:, None, None]
    table = pd.DataFrame(
        {"index": np.arange(len(rows)), "split": split, "y": y.astype(np.int64), "a": a.astype(np.int64)}
    )
    info = {"n_classes": 2, "n_attrs": 2, "classes": ["y0", "y1"], "attrs": ["a0", "a1"], "input": "image"}
    return table, torch.from_numpy(images), info
