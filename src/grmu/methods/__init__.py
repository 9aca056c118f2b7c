"""Unlearning methods, one file each, registered by name.

A method is a function ``run(ctx: UnlearnContext) -> model`` decorated with
``@register_method(name, options={...})``; ``options`` declares its own hyperparameters, each a
``grmu.schema`` option with its type, range, default and one line of doc (``Number(1.0, "weight
of the ascent loss", low=0)``), settable in ``params.yaml`` under ``methods.<name>``. The
``check_params`` stage refuses a resolved option outside its declared range before any stage
runs, and so does the registered ``run`` before the method starts. Shared hyperparameters
(epochs, lr, batch size, schedule) come from the ``unlearn`` section. ``method=<name>`` resolves
through ``get_method``; ``grmu methods`` lists them, ``grmu params methods.<name>`` their options.
"""

from __future__ import annotations

import importlib
import pkgutil

import copy
import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from grmu import GrmuError
from grmu.registry import Registry
from grmu.robust import reweight_weights
from grmu.schema import declare, defaults
from grmu.train import Pass, ce_loss, fit


@dataclass
class MethodSpec:
    name: str
    run: Callable
    options: dict  # option name -> default
    doc: str = ""
    check: Callable | None = None  # check(options, params): refuses a bad setting before any stage runs
    declared: dict = field(default_factory=dict)  # option name -> grmu.schema.Option (bare defaults: any value)

    def __post_init__(self):
        self.declared = declare({**self.options, **self.declared})


def _load_builtin() -> None:
    """Import every module of this folder: each registers itself, so a new file is all it takes
    (``grmu.stagedeps.LOADS_FOLDER``: the stages that use this registry depend on the folder)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


METHODS: Registry[MethodSpec] = Registry("method", _load_builtin)


def checked_options(spec: MethodSpec, options: dict, where: str | None = None) -> dict:
    """``options`` (every declared key, no other) checked against ``spec``'s declarations, with
    numbers as floats; one line naming ``<where>.<key>`` (default ``methods.<name>``) otherwise."""
    where = where or f"methods.{spec.name}"
    for key in options:
        if key not in spec.declared:
            raise GrmuError(f"unknown key '{where}.{key}'; valid keys: {', '.join(sorted(spec.declared)) or '(none)'}")
    out = {}
    for key, option in spec.declared.items():
        if key not in options:
            raise GrmuError(f"{where} lacks the option '{key}' (options: {', '.join(spec.declared)})")
        option.check(f"{where}.{key}", options[key])
        out[key] = float(options[key]) if option.kind == "number" and options[key] is not None else options[key]
    return out


def register_method(name: str, *, options: dict | None = None, check: Callable | None = None):
    """Register ``fn(ctx) -> model`` as method ``name``. ``options`` declares its own
    hyperparameters (option name -> ``grmu.schema`` option; a bare value is a default that any
    value may replace): the one home of their defaults, ranges and docs (params.yaml's
    ``methods.<name>`` keys are null unless a user sets them). The registered ``run`` checks
    ``ctx.options`` against them first. ``check(options, params)``, when given, is run by the
    ``check_params`` stage on the resolved options, for rules beyond one option's range."""
    declared = declare(options or {})

    def deco(fn):
        @functools.wraps(fn)
        def run(ctx):
            ctx.options = checked_options(spec, ctx.options)
            return fn(ctx)

        spec = MethodSpec(name, run, defaults(declared), (fn.__doc__ or "").strip(), check, declared)
        METHODS.add(name, spec)
        return fn

    return deco


def number_option(method: str, opts: dict, key: str, want: str, ok=lambda v: True, integer: bool = False):
    """``opts[key]`` checked to be a number (an int with ``integer``) satisfying ``ok``;
    otherwise one line naming the option, what it must be and the bad value. (A method
    that declares the option with its range in ``register_method`` needs no such check.)"""
    v = opts[key]
    types = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, types) or not ok(v):
        raise GrmuError(f"methods.{method}.{key} must be {want}, got {v!r}")
    return v if integer else float(v)


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

    def forget_pass(
        self,
        loss: Callable = ce_loss,
        batch_size: int | None = None,
        name: str = "forget",
        relabel: Callable | None = None,
    ) -> Pass:
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
            self.model,
            self.prep,
            passes,
            self.cfg,
            seed=self.seed,
            val_idx=self.prep.indices("val"),
            watch={"forget": self.forget_idx},
            live=self.live,
            desc=kw.pop("desc", f"unlearn s{self.seed}"),
            **kw,
        )
        return model
