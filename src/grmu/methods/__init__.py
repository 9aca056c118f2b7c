"""Unlearning methods, one file each, registered by name.

A method is a function ``run(ctx: UnlearnContext) -> model`` decorated with
``@register_method(name, options={...})``; ``options`` are its own hyperparameters with
defaults, settable in ``params.yaml`` under ``methods.<name>``. Shared hyperparameters
(epochs, lr, batch size, schedule) come from the ``unlearn`` section. ``method=<name>``
resolves through ``get_method``; ``grmu methods`` lists them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from grmu import GrmuError
from grmu.registry import Registry
from grmu.robust import reweight_weights
from grmu.train import Pass, ce_loss, fit


@dataclass
class MethodSpec:
    name: str
    run: Callable
    options: dict
    doc: str = ""
    check: Callable | None = None  # check(options, params): refuses a bad setting before any stage runs


def _load_builtin() -> None:
    from grmu.methods import (  # noqa: F401  (each registers itself)
        finetune, influence, l1_sparse, miu, neggrad, neggrad_plus, random_label, rum, salun, scrub, sharp_minmax,
    )


METHODS: Registry[MethodSpec] = Registry("method", _load_builtin)


def register_method(name: str, *, options: dict | None = None, check: Callable | None = None):
    """Register ``fn(ctx) -> model`` as method ``name``; ``options`` are its own
    hyperparameters with their defaults (the one home of those defaults: params.yaml's
    ``methods.<name>`` keys are null unless a user sets them); ``check(options, params)``,
    when given, is run by the ``check_params`` stage on the resolved options."""
    def deco(fn):
        METHODS.add(name, MethodSpec(name, fn, dict(options or {}), (fn.__doc__ or "").strip(), check))
        return fn

    return deco


def number_option(method: str, opts: dict, key: str, want: str, ok=lambda v: True, integer: bool = False):
    """``opts[key]`` checked to be a number (an int with ``integer``) satisfying ``ok``;
    otherwise one line naming the option, what it must be and the bad value."""
    v = opts[key]
    types = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, types) or not ok(v):
        raise GrmuError(f"methods.{method}.{key} must be {want}, got {v!r}")
    return v if integer else float(v)


def choice_option(method: str, opts: dict, key: str, valid) -> str:
    if opts[key] not in valid:
        raise GrmuError(f"methods.{method}.{key} '{opts[key]}' is unknown; valid: {', '.join(valid)}")
    return opts[key]


def bool_option(method: str, opts: dict, key: str) -> bool:
    if not isinstance(opts[key], bool):
        raise GrmuError(f"methods.{method}.{key} must be true or false, got {opts[key]!r}")
    return opts[key]


def get_method(name: str) -> MethodSpec:
    return METHODS.get(name)


def list_methods() -> list[MethodSpec]:
    return METHODS.entries()


@dataclass
class UnlearnContext:
    """Everything a method may use. ``model`` starts as a copy of PRETRAIN; ``original`` is
    PRETRAIN itself (frozen, eval mode) for methods that compare against it."""

    model: object
    prep: object
    forget_idx: np.ndarray
    remaining_idx: np.ndarray
    cfg: dict  # the `unlearn` section
    options: dict  # this method's own options
    reweight: bool
    seed: int
    live: object = None
    original: object = field(default=None)
    subsets: dict | None = None  # memorization forget sets: high/mid/low sample indices (RUM)

    def __post_init__(self):
        if self.original is None:
            self.original = copy.deepcopy(self.model).eval()
            for p in self.original.parameters():
                p.requires_grad_(False)

    def remaining_pass(self, loss: Callable = ce_loss, batch_size: int | None = None, name: str = "remaining") -> Pass:
        """A pass over the remaining set; with REWEIGHT on, drawn with the REWEIGHT weights."""
        return Pass(name, self.remaining_idx, loss, batch_size or self.cfg["batch_size"], self.remaining_weights())

    def forget_pass(self, loss: Callable = ce_loss, batch_size: int | None = None, name: str = "forget",
                    relabel: Callable | None = None) -> Pass:
        return Pass(name, self.forget_idx, loss, batch_size or self.cfg["batch_size"], relabel=relabel)

    def remaining_weights(self) -> np.ndarray | None:
        """REWEIGHT weights of the remaining samples (in ``remaining_idx`` order); None without ``reweight``."""
        if not self.reweight:
            return None
        g = self.prep.g
        return reweight_weights(g[self.prep.indices("train")], g[self.remaining_idx], self.prep.n_groups)

    def fit(self, passes: Callable[[int], list[Pass]], **kw):
        """The shared training loop over ``cfg['epochs']`` epochs; returns the last-epoch model
        (unlearning does no model selection). Logs val and forget accuracy each epoch."""
        model, _ = fit(
            self.model, self.prep, passes, self.cfg, seed=self.seed, val_idx=self.prep.indices("val"),
            watch={"forget": self.forget_idx}, live=self.live, desc=kw.pop("desc", f"unlearn s{self.seed}"), **kw,
        )
        return model
