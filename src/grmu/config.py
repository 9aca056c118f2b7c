"""Reading and validating ``params.yaml``.

The repository's ``params.yaml`` is the one home of every default value; this module only
knows which keys exist (``SCHEMA``) and what values they may take. A key in a params file that
is not in ``SCHEMA`` is refused with the list of valid keys (a typo never falls back to a
default), and so is a file that lacks one (every key is needed; copy it from the repository's
``params.yaml``). Sections whose keys are open (``datasets``, ``methods``) are checked by the
dataset or method that reads them: a dataset's keys must all be given
(``dataset_options``); a method's options default to the method's registered values
(``section_options``), with the recipe in between (``grmu.recipes``).
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from grmu import GrmuError

LOOP_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "schedule", "augment",
             "optimizer")
# the keys of params.yaml; None marks a leaf, a dict a section (OPEN_SECTIONS: keys checked elsewhere)
SCHEMA: dict = {
    "dataset": None,
    "data_dir": None,
    "seeds": None,
    "ratios": None,
    "method": None,
    "reweight": None,
    "recipe": None,
    "forget": {"groups": None, "multi_group": None},
    "datasets": {},
    "model": {"arch": None, "width": None, "pretrained": None},
    "train": dict.fromkeys(LOOP_KEYS),
    "retrain": {"erm": {"lr": None, "batch_size": None}, "reweight": {"lr": None, "batch_size": None},
                "gdro": {"lr": None, "batch_size": None, "eta": None}},
    "unlearn": dict.fromkeys(LOOP_KEYS),
    "methods": {},
    "eval": {"batch_size": None, "mia": None},
}

OPEN_SECTIONS = {"datasets", "methods"}
SCHEDULES = ("cosine", "const")
OPTIMIZERS = ("sgd", "adamw")
MIA_MODES = ("best_of_grid", "single")
MULTI_GROUPS = (3, 5)


def _check_keys(given: dict, schema: dict, prefix: str) -> None:
    for key, value in given.items():
        if key not in schema:
            where = f"{prefix}." if prefix else ""
            raise GrmuError(
                f"unknown key '{where}{key}' in params; valid keys here: {', '.join(sorted(schema))}"
            )
        if isinstance(schema[key], dict) and schema[key] and (prefix or key) not in OPEN_SECTIONS:
            if not isinstance(value, dict):
                raise GrmuError(f"'{prefix + '.' if prefix else ''}{key}' must be a mapping, got {value!r}")
            _check_keys(value, schema[key], f"{prefix}.{key}" if prefix else key)


def _check_complete(given: dict, schema: dict, prefix: str) -> None:
    for key, sub in schema.items():
        name = f"{prefix}{key}"
        if key not in given:
            raise GrmuError(f"params lack the key '{name}'; every key of the repository's params.yaml is needed "
                            "(copy it from there; README: Parameters)")
        if isinstance(sub, dict) and sub and name not in OPEN_SECTIONS:
            _check_complete(given[key], sub, f"{name}.")


def check_loop_section(section: str, cfg: dict) -> None:
    """Check the training-loop keys of ``train`` or ``unlearn`` that are present in ``cfg``."""
    for key, valid in (("schedule", SCHEDULES), ("optimizer", OPTIMIZERS)):
        if key in cfg and cfg[key] not in valid:
            raise GrmuError(f"{section}.{key} '{cfg[key]}' is unknown; valid: {', '.join(valid)}")
    for key in ("epochs", "batch_size"):
        v = cfg.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GrmuError(f"{section}.{key} must be a positive integer, got {v!r}")


def validate(params: dict) -> dict:
    """Return a copy of ``params``; raise GrmuError on anything unknown, missing or invalid."""
    if not isinstance(params, dict):
        raise GrmuError("params.yaml must be a mapping of keys to values")
    _check_keys(params, SCHEMA, "")
    _check_complete(params, SCHEMA, "")
    p = copy.deepcopy(params)
    for r in p["ratios"]:
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 < r <= 1:
            raise GrmuError(f"ratio {r!r} is outside (0, 1]; ratios must be numbers in (0, 1]")
    for s in p["seeds"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise GrmuError(f"seed {s!r} is not a non-negative integer")
    check_loop_section("train", p["train"])
    check_loop_section("unlearn", {k: v for k, v in p["unlearn"].items() if v is not None})
    if p["eval"]["mia"] not in MIA_MODES:
        raise GrmuError(f"eval.mia '{p['eval']['mia']}' is unknown; valid: {', '.join(MIA_MODES)}")
    groups = p["forget"]["groups"]
    if groups is not None:
        if not isinstance(groups, list) or not groups or not all(
            isinstance(gr, (list, tuple)) and len(gr) == 2 for gr in groups
        ):
            raise GrmuError(f"forget.groups must be a list of [y, a] pairs, got {groups!r}")
    multi = p["forget"]["multi_group"]
    if multi is not None:
        if isinstance(multi, bool) or multi not in MULTI_GROUPS:
            raise GrmuError(f"forget.multi_group {multi!r} is invalid; valid: null, 3 (9 groups), 5 (25 groups)")
        if groups is not None:
            raise GrmuError("forget.groups and forget.multi_group are both set; set one of them to null")
    if not isinstance(p["reweight"], bool):
        raise GrmuError(f"reweight must be true or false, got {p['reweight']!r}")
    return p


def load_params(path: str | Path = "params.yaml") -> dict:
    """Load, validate and complete the params file (see ``validate``)."""
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"params file not found: {path}")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    return validate(raw)


def dataset_options(p: dict, spec) -> dict:
    """The options of dataset ``spec`` from ``datasets.<name>``: exactly its registered keys."""
    given = (p.get("datasets") or {}).get(spec.name)
    if not isinstance(given, dict):
        raise GrmuError(f"params lack the section 'datasets.{spec.name}' (keys: {', '.join(spec.options)}); "
                        "copy it from the repository's params.yaml")
    for key in given:
        if key not in spec.options:
            raise GrmuError(f"unknown key 'datasets.{spec.name}.{key}'; valid keys: {', '.join(sorted(spec.options))}")
    for key in spec.options:
        if key not in given:
            raise GrmuError(f"params lack the key 'datasets.{spec.name}.{key}'; copy it from the repository's params.yaml")
    return {key: given[key] for key in spec.options}


def section_options(p: dict, section: str, name: str, defaults: dict) -> dict:
    """Options for one method: ``p[section][name]`` over ``defaults`` (a null keeps the default).

    Unknown option names are refused with the list of valid ones.
    """
    given = (p.get(section) or {}).get(name) or {}
    for key in given:
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "(none)"
            raise GrmuError(f"unknown key '{section}.{name}.{key}'; valid keys: {valid}")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}
