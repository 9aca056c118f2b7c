"""Dataset registry: ``list_datasets()``, ``get_dataset(name)``.

A dataset module registers a builder with ``@register_dataset(name, options=(...), ...)``.
The builder ``build(options, data_dir)`` turns raw files (or packaged data) into

* a per-sample table with columns ``index, split, y, a`` (``g`` is added on saving), and
* the inputs as one tensor (uint8 images ``N x C x H x W``, or integer ``N x 3 x L`` rows of
  BERT token ids, attention mask and segment ids),

which the ``prepare`` stage writes once (``grmu.prepared``). ``options`` names the keys of
``datasets.<name>`` in params.yaml, where their values live.

The builder's ``info`` dict goes into ``meta.json``: ``n_classes``, ``n_attrs``, ``classes``,
``attrs``, ``input``, and optionally ``augment`` (the training augmentation of image batches:
``shift``, the default, or ``crop_flip``, see ``grmu.augment``) and ``multi_group_pairs``
(the (y, a) pairs behind ``forget.multi_group``, see ``grmu.splits``).
"""

from __future__ import annotations

import importlib
import pkgutil

from dataclasses import dataclass
from typing import Callable

from grmu.registry import Registry


@dataclass
class DatasetSpec:
    name: str
    build: Callable  # (options: dict, data_dir: Path) -> (table: DataFrame, inputs: Tensor, info: dict)
    options: tuple  # the keys of datasets.<name> in params.yaml
    forget_groups: list  # default forget group(s) as [y, a] pairs
    doc: str = ""


def _load_builtin() -> None:
    """Import every module of this folder: each registers itself, so a new file is all it takes
    (``grmu.stagedeps.LOADS_FOLDER``: the stages that use this registry depend on the folder)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


DATASETS: Registry[DatasetSpec] = Registry("dataset", _load_builtin)


def register_dataset(name: str, *, options, forget_groups: list):
    def deco(fn):
        DATASETS.add(
            name, DatasetSpec(name, fn, tuple(options), [list(g) for g in forget_groups], (fn.__doc__ or "").strip())
        )
        return fn

    return deco


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def list_datasets() -> list[DatasetSpec]:
    return DATASETS.entries()
