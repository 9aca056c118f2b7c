"""CIFAR-10 and CIFAR-100 from the official python layouts (sharp-unlearn fact sheet §2).

``<data_dir>/cifar-10-batches-py/`` (``data_batch_1`` … ``data_batch_5``, ``test_batch``,
``batches.meta``) and ``<data_dir>/cifar-100-python/`` (``train``, ``test``, ``meta``), as the
official tarballs unpack. Those files are pickles: they are read with a restricted unpickler
that builds plain containers and numpy arrays and nothing else, so a file that would run code
is refused with one line (``torchvision.datasets.CIFAR10`` would unpickle it freely).

Splits as upstream: per class, in class order, ``numpy.random.RandomState(split_seed).choice``
takes 10% of the training images (without replacement) as validation; the rest is train; the
official test set is test. There is no group attribute: ``a`` is 0 everywhere, so the group
and fairness metrics (GA, EO, DP, EP) are omitted and forget sets are drawn with
``forget.kind: random`` (the sharp-unlearn papers' protocol). Training augmentation:
RandomCrop(32, padding 4) + horizontal flip (``crop_pad_flip``). Upstream adds RandAugment for
CIFAR-100 (S4) and normalises per dataset inside the model; grmu maps every image to [-1, 1].
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.data import register_dataset
from grmu.data.images import need_dir, need_file

OPTIONS = ("split_seed",)  # values: params.yaml
DOWNLOAD = "the python version from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked"
LAYOUTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": "labels",
        "names": "label_names",
        "n_classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": "fine_labels",
        "names": "fine_label_names",
        "n_classes": 100,
    },
}


class _Unpickler(pickle.Unpickler):
    """Plain containers and numpy arrays only: any other class or function is refused
    (``_codecs.encode`` rebuilds byte strings in protocol-2 pickles written by Python 3)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def read_batch(path: Path) -> dict:
    """One CIFAR python batch file as a dict with str keys, read without running pickle code."""
    need_file(path, f"CIFAR file {path.name}", DOWNLOAD)
    try:
        d = _Unpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:  # pickle raises many types for a damaged or foreign file
        raise GrmuError.wrap(f"cannot read {path} as a CIFAR batch", e) from e
    if not isinstance(d, dict):
        raise GrmuError(f"{path} is not a CIFAR batch (a pickled dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def read_split(folder: Path, files: list[str], label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in files:
        d = read_batch(folder / name)
        data, lab = d.get("data"), d.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise GrmuError(f"{folder / name}: 'data' must be a uint8 array of N x 3072 pixels")
        lab = np.asarray(lab, dtype=np.int64)
        if lab.shape != (len(data),) or lab.min() < 0 or lab.max() >= n_classes:
            raise GrmuError(f"{folder / name}: '{label_key}' must hold one label in 0..{n_classes - 1} per image")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def validation_split(labels: np.ndarray, seed: int, n_classes: int, frac: float = 0.1) -> np.ndarray:
    """Upstream's validation indices: per class in class order, ``RandomState(seed).choice`` of
    ``int(frac * n_class)`` of the class's training images, without replacement."""
    rng = np.random.RandomState(seed)
    picks = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, int(frac * len(idx)), replace=False))
    return np.concatenate(picks)


def build_cifar(name: str, options: dict, data_dir):
    import pandas as pd
    import torch

    seed = options["split_seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GrmuError(f"datasets.{name}.split_seed must be a non-negative integer, got {seed!r}")
    lay = LAYOUTS[name]
    folder = need_dir(Path(data_dir) / lay["folder"], f"{name} folder", DOWNLOAD)
    n_classes = lay["n_classes"]
    tr_x, tr_y = read_split(folder, lay["train"], lay["labels"], n_classes)
    te_x, te_y = read_split(folder, lay["test"], lay["labels"], n_classes)
    names = read_batch(folder / lay["meta"]).get(lay["names"])
    if not isinstance(names, list) or len(names) != n_classes:
        raise GrmuError(f"{folder / lay['meta']}: '{lay['names']}' must list {n_classes} class names")
    split = np.array(["train"] * len(tr_y) + ["test"] * len(te_y), dtype=object)
    split[validation_split(tr_y, seed, n_classes)] = "val"
    y = np.concatenate([tr_y, te_y])
    table = pd.DataFrame({"index": np.arange(len(y)), "split": split, "y": y, "a": np.zeros(len(y), dtype=np.int64)})
    inputs = torch.from_numpy(np.ascontiguousarray(np.concatenate([tr_x, te_x])))
    info = {
        "n_classes": n_classes,
        "n_attrs": 1,
        "classes": [n.decode() if isinstance(n, bytes) else str(n) for n in names],
        "attrs": ["all"],
        "input": "image",
        "augment": "crop_pad_flip",
    }
    return table, inputs, info


@register_dataset("cifar10", options=OPTIONS, forget_groups=[[0, 0]])
def build_cifar10(options: dict, data_dir):
    """CIFAR-10 (official python batches): 45,000 train / 5,000 val (10% per class) / 10,000 test."""
    return build_cifar("cifar10", options, data_dir)


@register_dataset("cifar100", options=OPTIONS, forget_groups=[[0, 0]])
def build_cifar100(options: dict, data_dir):
    """CIFAR-100 (official python files, fine labels): 45,000 train / 5,000 val / 10,000 test."""
    return build_cifar("cifar100", options, data_dir)
