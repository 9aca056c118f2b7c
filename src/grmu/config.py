"""Reading and validating ``params.yaml``.

``DEFAULTS`` is the schema: every key a user may set, with its default. A key in
``params.yaml`` that is not in ``DEFAULTS`` is refused with the list of valid keys, so a
typo never silently falls back to a default. Sections whose keys are open (the per-dataset
and per-method option maps) are listed in ``OPEN_SECTIONS``; their inner keys are checked
by the dataset or method that reads them.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from grmu import GrmuError

DEFAULTS: dict = {
    "dataset": "colored_mnist",
    "data_dir": "data/raw",
    "seeds": [0, 1, 2],
    "ratios": [0.1, 0.5, 0.9],
    "method": "finetune",
    "reweight": False,
    # hyperparameter recipe of the unlearning methods: auto (the dataset's), none, or a name
    "recipe": "auto",
    # forget-set groups as [y, a] pairs; null = the dataset's default (dominant) group.
    # multi_group (FairFace only): 3 or 5 = the paper's 9- or 25-group forget sets
    "forget": {"groups": None, "multi_group": None},
    "datasets": {},
    "model": {"arch": "small_cnn", "width": 16, "pretrained": "none"},
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 2e-3,
        "warmup_epochs": 1,
        "schedule": "cosine",
        "augment": True,
        "optimizer": "sgd",
    },
    # per-variant overrides of `train` for the RETRAIN reference models (null = as in train)
    "retrain": {
        "erm": {"lr": None, "batch_size": None},
        "reweight": {"lr": None, "batch_size": None},
        "gdro": {"lr": None, "batch_size": None, "eta": 0.1},
    },
    # shared by every unlearning method: null everywhere = take the recipe's value, else
    # UNLEARN_DEFAULTS (see grmu.recipes); a value given in params.yaml wins.
    "unlearn": {
        "epochs": None,
        "batch_size": None,
        "lr": None,
        "momentum": None,
        "weight_decay": None,
        "warmup_epochs": None,
        "schedule": None,
        "augment": None,
        "optimizer": None,
    },
    "methods": {},
    "eval": {"batch_size": 512, "mia": "best_of_grid"},
}

# the paper's common unlearning setup (fact sheet §5.1), used where neither params.yaml nor
# the recipe sets a key
UNLEARN_DEFAULTS = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "warmup_epochs": 0,
    "schedule": "cosine",
    "augment": True,
    "optimizer": "sgd",
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


def _merge(defaults: dict, given: dict) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


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
    """Return ``params`` merged over ``DEFAULTS``; raise GrmuError on anything invalid."""
    if not isinstance(params, dict):
        raise GrmuError("params.yaml must be a mapping of keys to values")
    _check_keys(params, DEFAULTS, "")
    p = _merge(DEFAULTS, params)
    for r in p["ratios"]:
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 < r <= 1:
            raise GrmuError(f"ratio {r!r} is outside (0, 1]; ratios must be numbers in (0, 1]")
    for s in p["seeds"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise GrmuError(f"seed {s!r} is not a non-negative integer")
    check_loop_section("train", p["train"])
    check_loop_section("unlearn", {k: v for k, v in p["unlearn"].items() if v is not None})
    from grmu.recipes import recipe_name

    recipe_name(p)  # refuses an unknown recipe
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


def section_options(p: dict, section: str, name: str, defaults: dict) -> dict:
    """Options for one dataset or method: ``p[section][name]`` over ``defaults``.

    Unknown option names are refused with the list of valid ones.
    """
    given = (p.get(section) or {}).get(name) or {}
    for key in given:
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "(none)"
            raise GrmuError(f"unknown key '{section}.{name}.{key}'; valid keys: {valid}")
    return {**defaults, **given}
