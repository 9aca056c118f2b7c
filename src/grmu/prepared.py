"""The prepared-dataset format: what ``prepare`` writes once and every later stage reads.

``data/prepared/`` holds ``samples.csv`` (one row per sample: ``index, split, y, a, g`` with
``g = a + y * n_attrs``), ``inputs.pt`` (one tensor: uint8 images ``N x C x H x W`` or
integer ``N x 3 x L`` token rows) and ``meta.json`` (class and attribute names, the input
shape, the training augmentation, the dataset's default forget groups, run info).
Reading never runs code from the files (``weights_only=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grmu import GrmuError

SPLITS = ("train", "val", "test")


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


def group_names(meta: dict) -> list[str]:
    """Each group's label, ``g{i} ({class}, {attribute})``, from a prepared dataset's meta."""
    n_attrs = meta["n_attrs"]
    return [
        f"g{i} ({meta['classes'][i // n_attrs]}, {meta['attrs'][i % n_attrs]})"
        for i in range(meta["n_classes"] * n_attrs)
    ]


def group_index(y, a, n_attrs: int):
    """g = a + y * n_attrs (the paper's convention)."""
    return a + y * n_attrs


def save_prepared(out_dir: str | Path, table, inputs, meta: dict) -> None:
    """Write ``samples.csv``, ``inputs.pt`` and ``meta.json`` into ``out_dir``, all at once."""
    import os
    import shutil

    import torch

    from grmu.runtime import write_failed, write_json

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
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:  # by its path: torch names the archive inside after the file (inputs/), as it always has
            torch.save(inputs, tmp / "inputs.pt")
        except RuntimeError as e:  # torch's writer reports a failed write (a full disk) as this
            raise GrmuError.wrap(f"cannot write {out_dir / 'inputs.pt'} (a full disk?); nothing was saved", e) from e
        table[["index", "split", "y", "a", "g"]].to_csv(tmp / "samples.csv", index=False)
        write_json(tmp / "meta.json", meta)
        old = None
        if out_dir.exists():
            old = tmp.with_name(f"{tmp.name}.old")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:  # a full disk, a read-only folder: one line, nothing left (below)
        raise write_failed(out_dir, e) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_prepared(out_dir: str | Path, inputs: bool = True) -> Prepared:
    """The prepared dataset in ``out_dir``. ``inputs=False``: the table and meta only (``inputs``
    is None; torch is not imported), for the stages that never run a model."""
    import pandas as pd

    from grmu.runtime import read_json

    out_dir = Path(out_dir)
    meta = read_json(out_dir / "meta.json", "prepared dataset")
    tensor = None
    try:
        table = pd.read_csv(out_dir / "samples.csv")
        if inputs:
            import torch

            # weights_only: a tensor and nothing else; a tampered file can never run code
            tensor = torch.load(out_dir / "inputs.pt", mmap=True, weights_only=True)
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"inputs.pt holds a {type(tensor).__name__}, not a tensor")
    except Exception as e:  # pandas, pickle, zipfile, torch raise many types for a damaged file
        raise GrmuError.wrap(f"cannot read the prepared dataset in {out_dir} (rerun `dvc repro prepare`)", e) from e
    rows = len(table) if tensor is None else len(tensor)
    if len(table) != rows or not (table["index"].to_numpy() == np.arange(len(table))).all():
        raise GrmuError(f"prepared dataset in {out_dir} is inconsistent; rerun `dvc repro prepare`")
    return Prepared(
        split=table["split"].to_numpy().astype(str),
        y=table["y"].to_numpy().astype(np.int64),
        a=table["a"].to_numpy().astype(np.int64),
        g=table["g"].to_numpy().astype(np.int64),
        inputs=tensor,
        meta=meta,
    )
