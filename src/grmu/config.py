"""Reading and validating ``params.yaml`` against the declared schema (``grmu.schema``).

A key in a params file that the schema lacks is refused with the list of valid keys (a typo
never falls back to a default), and so is a file that lacks one (every key is needed; copy it
from the repository's ``params.yaml``). Each value is checked against its declared type and
range, then the rules that tie keys together (below). Sections whose keys are open
(``datasets``, ``methods``) are checked with the dataset or method that owns them: a dataset's
keys must all be given (``dataset_options``); a method's options default to the method's
declared values (``section_options``), with the recipe in between (``grmu.recipes``), and the
``check_params`` stage checks them. Keys of ``model``, ``train`` and ``retrain`` left ``null``
take the dataset's training protocol's value, else the schema's default (``grmu.protocols``):
``validate`` returns them filled in.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from grmu import GrmuError
from grmu.protocols import resolve as resolve_protocol
from grmu.runtime import read_config
from grmu.schema import LAYERS, OPEN, PARAMS, SAM, Option, leaves
from grmu.schema import REFERENCES  # noqa: F401  (grmu.report.gaps reads it from here)

LOOP = PARAMS["unlearn"]  # the training-loop keys, shared by train and unlearn


def _check_keys(given: dict, tree: dict, prefix: str) -> None:
    for key, value in given.items():
        if key not in tree:
            raise GrmuError(f"unknown key '{prefix}{key}' in params; valid keys here: {', '.join(sorted(tree))}")
        if tree[key] is OPEN and (not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values())):
            raise GrmuError(f"'{prefix}{key}' must map each name to a mapping of options, got {value!r}")
        if isinstance(tree[key], dict):
            if not isinstance(value, dict):
                raise GrmuError(f"'{prefix}{key}' must be a mapping, got {value!r}")
            _check_keys(value, tree[key], f"{prefix}{key}.")


def _check_complete(given: dict, tree: dict, prefix: str) -> None:
    for key, sub in tree.items():
        if key not in given:
            raise GrmuError(
                f"params lack the key '{prefix}{key}'; every key of the repository's params.yaml is "
                "needed (copy it from there; `grmu params` lists them)"
            )
        if isinstance(sub, dict):
            _check_complete(given[key], sub, f"{prefix}{key}.")


def _get(p: dict, dotted: str):
    for part in dotted.split("."):
        p = p[part]
    return p


def check_sam(name: str, cfg) -> dict:
    """A ``train.sam`` / ``unlearn.sam`` mapping (``grmu.sam``): exactly the keys of
    ``grmu.schema.SAM``, valid values; one line naming ``name.key`` otherwise."""
    if not isinstance(cfg, dict):
        raise GrmuError(f"{name} must be a mapping with keys {', '.join(SAM)}, got {cfg!r}")
    for key in cfg:
        if key not in SAM:
            raise GrmuError(f"unknown key '{name}.{key}'; valid keys: {', '.join(SAM)}")
    for key, option in SAM.items():
        if key not in cfg:
            raise GrmuError(f"{name} lacks the key '{key}' (keys: {', '.join(SAM)})")
        option.check(f"{name}.{key}", cfg[key])
    return cfg


def check_loop_section(section: str, cfg: dict) -> None:
    """Check the training-loop keys of ``train`` or ``unlearn`` that are present in ``cfg``."""
    for key, option in LOOP.items():
        if key in cfg:
            check_sam(f"{section}.sam", cfg[key]) if key == "sam" else option.check(f"{section}.{key}", cfg[key])


def _check_rules(p: dict) -> None:
    """The rules that tie keys together."""
    forget, mem = p["forget"], p["memorization"]
    if forget["kind"] == "memorization" and mem["score"] == "none":
        valid = ", ".join(s for s in PARAMS["memorization"]["score"].choices if s != "none")
        raise GrmuError(
            f"forget.kind memorization needs memorization scores, but memorization.score is none; valid: {valid}"
        )
    if mem["score"] == "file" and mem["file"] is None:
        raise GrmuError("memorization.score file needs memorization.file (a .npz path under data_dir)")
    if forget["count"] is not None:
        if forget["kind"] == "group":
            raise GrmuError(
                "forget.count sets the size of a random or memorization forget set; with forget.kind "
                "'group' the size is the ratio of the forget groups (set forget.count: null)"
            )
        if len(p["ratios"]) > 1:
            raise GrmuError(
                f"forget.count fixes the forget-set size, so ratios {p['ratios']} would repeat one forget "
                "set; list a single ratio (it only names the runs)"
            )
    if forget["multi_group"] is not None and forget["groups"] is not None:
        raise GrmuError("forget.groups and forget.multi_group are both set; set one of them to null")
    for r in p["audit"]["ratios"]:
        if r not in p["ratios"]:
            raise GrmuError(
                f"audit.ratios: ratio {r!r} is not one of ratios {p['ratios']} (the audit reuses their forget sets); "
                f"valid: {', '.join(map(str, p['ratios']))}"
            )


def validate(params: dict) -> dict:
    """Return a copy of ``params`` with ``model``, ``train`` and ``retrain`` filled in; raise
    GrmuError on anything unknown, missing or invalid."""
    if not isinstance(params, dict):
        raise GrmuError("params.yaml must be a mapping of keys to values")
    _check_keys(params, PARAMS, "")
    _check_complete(params, PARAMS, "")
    p = copy.deepcopy(params)
    for key, option in PARAMS.items():  # the top-level keys first: the protocol's name, data_dir
        if isinstance(option, Option):
            option.check(key, p[key])
    sections, _ = resolve_protocol(p)  # model / train / retrain keys left null: the protocol's, else the default
    p.update(sections)
    for key, option in leaves({k: v for k, v in PARAMS.items() if isinstance(v, dict)}):
        value = _get(p, key)
        if value is None and LAYERS.get(key.split(".")[0]) == "recipe":
            continue  # unlearn keys left null take the recipe's value: checked when resolved (grmu.recipes)
        option.check(key, value)
    _check_rules(p)
    return p


def load_params(path: str | Path = "params.yaml") -> dict:
    """Load, validate and complete the params file (see ``validate``). Inside a stage, the file
    must not change before the stage ends (``grmu.runtime.check_configs``)."""
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(read_config(path, params=True))
    except yaml.YAMLError as e:
        raise GrmuError.wrap(f"{path} is not valid YAML", e) from e
    return validate(raw if raw is not None else {})


def dataset_options(p: dict, spec) -> dict:
    """The options of dataset ``spec`` from ``datasets.<name>``: exactly its registered keys."""
    given = (p.get("datasets") or {}).get(spec.name)
    if not isinstance(given, dict):
        raise GrmuError(
            f"params lack the section 'datasets.{spec.name}' (keys: {', '.join(spec.options)}); "
            "copy it from the repository's params.yaml"
        )
    for key in given:
        if key not in spec.options:
            raise GrmuError(f"unknown key 'datasets.{spec.name}.{key}'; valid keys: {', '.join(sorted(spec.options))}")
    for key in spec.options:
        if key not in given:
            raise GrmuError(
                f"params lack the key 'datasets.{spec.name}.{key}'; copy it from the repository's params.yaml"
            )
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
