"""Dataset registry and the prepared-dataset format.

A dataset module registers a builder with ``@register_dataset(name, options=..., ...)``.
The builder turns raw files (or packaged data) into

* a per-sample table with columns ``index, split, y, a, g`` (``g = a + y * n_attrs``), and
* the inputs as one tensor (uint8 images ``N x C x H x W``, or integer ``N x 3 x L`` rows of
  BERT token ids, attention mask and segment ids),

which ``prepare`` writes once to ``data/prepared/`` and every later stage memory-maps.

The builder's ``info`` dict goes into ``meta.json``: ``n_classes``, ``n_attrs``, ``classes``,
``attrs``, ``input``, and optionally ``augment`` (the training augmentation of image batches:
``shift``, the default, or ``crop_flip``, see ``grmu.train.AUGMENTATIONS``) and
``multi_group_pairs`` (the (y, a) pairs behind ``forget.multi_group``, see ``grmu.splits``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from grmu import GrmuError

SPLITS = ("train", "val", "test")


@dataclass
class DatasetSpec:
    name: str
    build: Callable  # (options: dict, data_dir: Path) -> (table: DataFrame, inputs: Tensor, info: dict)
    options: dict
    forget_groups: list  # default forget group(s) as [y, a] pairs
    doc: str = ""


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, options: dict, forget_groups: list):
    def deco(fn):
        DATASETS[name] = DatasetSpec(name, fn, options, [list(g) for g in forget_groups], (fn.__doc__ or "").strip())
        return fn

    return deco


def get_dataset(name: str) -> DatasetSpec:
    _load_builtin()
    if name not in DATASETS:
        raise GrmuError(f"unknown dataset '{name}'; valid: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _load_builtin() -> None:
    from grmu.data import celeba, colored_mnist, fairface, multinli, waterbirds  # noqa: F401  (each registers itself)


@dataclass
class Prepared:
    """A prepared dataset as read back from disk."""

    split: np.ndarray  # str per sample
    y: np.ndarray
    a: np.ndarray
    g: np.ndarray
    inputs: object  # torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return int(self.meta["n_classes"])

    @property
    def n_attrs(self) -> int:
        return int(self.meta["n_attrs"])

    @property
    def n_groups(self) -> int:
        return self.n_classes * self.n_attrs

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def group_counts(self, idx: np.ndarray) -> np.ndarray:
        return np.bincount(self.g[idx], minlength=self.n_groups)


def group_index(y, a, n_attrs: int):
    """g = a + y * n_attrs (the paper's convention)."""
    return a + y * n_attrs


def save_prepared(out_dir: str | Path, table, inputs, meta: dict) -> None:
    """Write ``samples.csv``, ``inputs.pt`` and ``meta.json`` into ``out_dir``, all at once."""
    import os
    import shutil

    import torch

    from grmu.runtime import write_json

    missing = {"index", "split", "y", "a"} - set(table.columns)
    if missing:
        raise GrmuError(f"dataset table lacks columns {sorted(missing)}")
    bad = set(table["split"]) - set(SPLITS)
    if bad:
        raise GrmuError(f"unknown split names {sorted(bad)}; valid: {', '.join(SPLITS)}")
    table = table.copy()
    table["g"] = group_index(table["y"].to_numpy(), table["a"].to_numpy(), meta["n_attrs"])
    out_dir = Path(out_dir)
    # everything goes into a fresh folder beside out_dir that replaces it only when complete,
    # so a failure never leaves a partial (or a half-old, half-new) prepared dataset
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        torch.save(inputs, tmp / "inputs.pt")
        table[["index", "split", "y", "a", "g"]].to_csv(tmp / "samples.csv", index=False)
        write_json(tmp / "meta.json", meta)
        old = None
        if out_dir.exists():
            old = tmp.with_name(f"{tmp.name}.old")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_prepared(out_dir: str | Path) -> Prepared:
    import pandas as pd
    import torch

    from grmu.runtime import read_json

    out_dir = Path(out_dir)
    meta = read_json(out_dir / "meta.json", "prepared dataset")
    try:
        table = pd.read_csv(out_dir / "samples.csv")
        # weights_only: a tensor and nothing else; a tampered file can never run code
        inputs = torch.load(out_dir / "inputs.pt", mmap=True, weights_only=True)
        if not isinstance(inputs, torch.Tensor):
            raise ValueError(f"inputs.pt holds a {type(inputs).__name__}, not a tensor")
    except Exception as e:  # pandas, pickle, zipfile, torch raise many types for a damaged file
        raise GrmuError.wrap(f"cannot read the prepared dataset in {out_dir} (rerun `dvc repro prepare`)", e) from e
    if len(table) != len(inputs) or not (table["index"].to_numpy() == np.arange(len(table))).all():
        raise GrmuError(f"prepared dataset in {out_dir} is inconsistent; rerun `dvc repro prepare`")
    return Prepared(
        split=table["split"].to_numpy().astype(str),
        y=table["y"].to_numpy().astype(np.int64),
        a=table["a"].to_numpy().astype(np.int64),
        g=table["g"].to_numpy().astype(np.int64),
        inputs=inputs,
        meta=meta,
    )
