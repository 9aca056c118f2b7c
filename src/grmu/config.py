"""Reading and validating ``params.yaml``.

The repository's ``params.yaml`` is the one home of every default value; this module only
knows which keys exist (``SCHEMA``) and what values they may take. A key in a params file that
is not in ``SCHEMA`` is refused with the list of valid keys (a typo never falls back to a
default), and so is a file that lacks one (every key is needed; copy it from the repository's
``params.yaml``). Sections whose keys are open (``datasets``, ``methods``) are checked by the
dataset or method that reads them: a dataset's keys must all be given
(``dataset_options``); a method's options default to the method's registered values
(``section_options``), with the recipe in between (``grmu.recipes``). Keys of ``model``,
``train`` and ``retrain`` left ``null`` take the dataset's training protocol's value, else the
built-in default (``grmu.protocols``): ``validate`` returns them filled in.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

from grmu import GrmuError
from grmu.protocols import resolve as resolve_protocol

BACKENDS = ("auto", "nccl", "gloo")  # distributed.backend (grmu.distributed)

LOOP_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "schedule", "augment",
             "optimizer", "sam")
SAM_SCHEMA = {"mode": None, "rho": None, "lamb": None, "adaptive": None}  # grmu.sam
SAM_MODES = ("none", "min", "max")
# the keys of params.yaml; None marks a leaf, a dict a section (OPEN_SECTIONS: keys checked elsewhere)
SCHEMA: dict = {
    "dataset": None,
    "data_dir": None,
    "seeds": None,
    "ratios": None,
    "method": None,
    "reweight": None,
    "recipe": None,
    "protocol": None,
    "forget": {"kind": None, "level": None, "count": None, "groups": None, "multi_group": None},
    "memorization": {"score": None, "models": None, "fraction": None, "epochs": None, "ft_lr": None, "ft_epochs": None,
                     "file": None, "key": None},
    "datasets": {},
    "model": {"arch": None, "width": None, "pretrained": None, "precision": None},
    "train": {**dict.fromkeys(LOOP_KEYS), "sam": SAM_SCHEMA},
    "retrain": {"erm": {"lr": None, "batch_size": None, "precision": None},
                "reweight": {"lr": None, "batch_size": None, "precision": None},
                "gdro": {"lr": None, "batch_size": None, "precision": None, "eta": None}},
    "unlearn": {**dict.fromkeys(LOOP_KEYS), "sam": SAM_SCHEMA},
    "methods": {},
    "eval": {"batch_size": None, "mia": None, "reference": None},
    "distributed": {"processes": None, "backend": None},
}

OPEN_SECTIONS = {"datasets", "methods"}
PRECISIONS = ("fp32", "bf16", "auto")  # model.precision (grmu.models.run_precision)
SCHEDULES = ("cosine", "const")
OPTIMIZERS = ("sgd", "adamw")
MIA_MODES = ("best_of_grid", "single")
REFERENCES = ("retrain_reweight", "retrain_erm", "retrain_gdro")  # eval.reference (grmu.report.gaps)
MULTI_GROUPS = (3, 5)
FORGET_KINDS = ("group", "random", "memorization")  # forget.kind (grmu.splits)
FORGET_LEVELS = ("high", "mid", "low", "mix")  # forget.level (grmu.memorization)
MEMORIZATION_PROXIES = ("confidence", "max_conf", "entropy", "bi_acc")  # recorded along one training run
MEMORIZATION_SCORES = ("auto", "none", "heldout", *MEMORIZATION_PROXIES, "ho_ret", "file")  # memorization.score


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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_int(name: str, v) -> int:
    if not _is_int(v) or v < 1:
        raise GrmuError(f"{name} must be a positive integer, got {v!r}")
    return v


def nonneg_int(name: str, v) -> int:
    if not _is_int(v) or v < 0:
        raise GrmuError(f"{name} must be a non-negative integer, got {v!r}")
    return v


def boolean(name: str, v) -> bool:
    if not isinstance(v, bool):
        raise GrmuError(f"{name} must be true or false, got {v!r}")
    return v


def finite_number(name: str, v, *, low: float | None = None, low_open: bool = False, high: float | None = None,
                  high_open: bool = False) -> float:
    """``v`` as a float when it is a finite number within the bounds; else one line naming it."""
    ok = _is_number(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise GrmuError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {v!r}")
    return float(v)


def _choice(name: str, v, valid) -> None:
    if isinstance(v, (list, dict)) or v not in valid:
        raise GrmuError(f"{name} '{v}' is unknown; valid: {', '.join(valid)}")


def check_sam(name: str, cfg) -> dict:
    """A ``train.sam`` / ``unlearn.sam`` mapping (``grmu.sam``): exactly the keys of ``SAM_SCHEMA``,
    valid values; one line naming ``name.key`` otherwise."""
    if not isinstance(cfg, dict):
        raise GrmuError(f"{name} must be a mapping with keys {', '.join(SAM_SCHEMA)}, got {cfg!r}")
    for key in cfg:
        if key not in SAM_SCHEMA:
            raise GrmuError(f"unknown key '{name}.{key}'; valid keys: {', '.join(SAM_SCHEMA)}")
    for key in SAM_SCHEMA:
        if key not in cfg:
            raise GrmuError(f"{name} lacks the key '{key}' (keys: {', '.join(SAM_SCHEMA)})")
    _choice(f"{name}.mode", cfg["mode"], SAM_MODES)
    finite_number(f"{name}.rho", cfg["rho"], low=0, low_open=True)
    finite_number(f"{name}.lamb", cfg["lamb"], low=0)
    boolean(f"{name}.adaptive", cfg["adaptive"])
    return cfg


def check_memorization(cfg: dict, forget_kind: str) -> None:
    """The ``memorization`` section (``grmu.memorization``, ``grmu.stages.memorization``)."""
    _choice("memorization.score", cfg["score"], MEMORIZATION_SCORES)
    if forget_kind == "memorization" and cfg["score"] == "none":
        raise GrmuError("forget.kind memorization needs memorization scores, but memorization.score is none; "
                        f"valid: {', '.join(s for s in MEMORIZATION_SCORES if s != 'none')}")
    if not _is_int(cfg["models"]) or cfg["models"] < 2:
        raise GrmuError(f"memorization.models must be an integer >= 2, got {cfg['models']!r}")
    finite_number("memorization.fraction", cfg["fraction"], low=0, low_open=True, high=1, high_open=True)
    if cfg["epochs"] is not None:
        positive_int("memorization.epochs", cfg["epochs"])
    finite_number("memorization.ft_lr", cfg["ft_lr"], low=0, low_open=True)
    positive_int("memorization.ft_epochs", cfg["ft_epochs"])
    for key in ("file", "key"):
        if cfg[key] is not None and (not isinstance(cfg[key], str) or not cfg[key]):
            raise GrmuError(f"memorization.{key} must be null or a non-empty string, got {cfg[key]!r}")
    if cfg["score"] == "file" and cfg["file"] is None:
        raise GrmuError("memorization.score file needs memorization.file (a .npz path under data_dir)")


def check_loop_section(section: str, cfg: dict) -> None:
    """Check the training-loop keys of ``train`` or ``unlearn`` that are present in ``cfg``."""
    checks = {
        "schedule": lambda n, v: _choice(n, v, SCHEDULES),
        "optimizer": lambda n, v: _choice(n, v, OPTIMIZERS),
        "epochs": positive_int,
        "batch_size": positive_int,
        "lr": lambda n, v: finite_number(n, v, low=0, low_open=True),
        "momentum": lambda n, v: finite_number(n, v, low=0, high=1, high_open=True),
        "weight_decay": lambda n, v: finite_number(n, v, low=0),
        "warmup_epochs": nonneg_int,
        "augment": boolean,
        "sam": check_sam,
    }
    for key, check in checks.items():
        if key in cfg:
            check(f"{section}.{key}", cfg[key])


def _unique_list(name: str, v, item_ok, want: str) -> None:
    if not isinstance(v, list) or not v:
        raise GrmuError(f"{name} must be a non-empty list of {want}, got {v!r}")
    for item in v:
        if not item_ok(item):
            raise GrmuError(f"{name}: {item!r} is not {want[:-1] if want.endswith('s') else want}; "
                            f"{name} must be a list of {want}")
    if len({repr(i) for i in v}) != len(v):
        raise GrmuError(f"{name} {v!r} repeats a value; list each once")


def validate(params: dict) -> dict:
    """Return a copy of ``params``; raise GrmuError on anything unknown, missing or invalid."""
    if not isinstance(params, dict):
        raise GrmuError("params.yaml must be a mapping of keys to values")
    _check_keys(params, SCHEMA, "")
    _check_complete(params, SCHEMA, "")
    p = copy.deepcopy(params)
    for key in ("dataset", "method", "recipe", "protocol", "data_dir"):
        if not isinstance(p[key], str) or not p[key]:
            raise GrmuError(f"{key} must be a name (a non-empty string), got {p[key]!r}")
    sections, _ = resolve_protocol(p)  # model / train / retrain keys left null: the protocol's, else the default
    p.update(sections)
    for r in p["ratios"] if isinstance(p["ratios"], list) else []:
        if not _is_number(r) or not 0 < r <= 1:
            raise GrmuError(f"ratio {r!r} is outside (0, 1]; ratios must be numbers in (0, 1]")
    _unique_list("ratios", p["ratios"], lambda r: True, "numbers in (0, 1]")
    for s in p["seeds"] if isinstance(p["seeds"], list) else []:
        if not _is_int(s) or s < 0:
            raise GrmuError(f"seed {s!r} is not a non-negative integer; seeds must be non-negative integers")
    _unique_list("seeds", p["seeds"], lambda s: True, "non-negative integers")
    check_loop_section("train", p["train"])
    # unlearn keys left null take the recipe's value: the resolved section is checked in grmu.recipes
    check_loop_section("unlearn", {k: v for k, v in p["unlearn"].items() if v is not None and k != "sam"})
    for variant, over in p["retrain"].items():
        if over["lr"] is not None:
            finite_number(f"retrain.{variant}.lr", over["lr"], low=0, low_open=True)
        if over["batch_size"] is not None:
            positive_int(f"retrain.{variant}.batch_size", over["batch_size"])
        if over["precision"] is not None:
            _choice(f"retrain.{variant}.precision", over["precision"], PRECISIONS)
    finite_number("retrain.gdro.eta", p["retrain"]["gdro"]["eta"], low=0, low_open=True)
    positive_int("model.width", p["model"]["width"])
    _choice("model.precision", p["model"]["precision"], PRECISIONS)
    for key in ("arch", "pretrained"):
        if not isinstance(p["model"][key], str) or not p["model"][key]:
            raise GrmuError(f"model.{key} must be a non-empty string, got {p['model'][key]!r}")
    positive_int("eval.batch_size", p["eval"]["batch_size"])
    positive_int("distributed.processes", p["distributed"]["processes"])
    _choice("distributed.backend", p["distributed"]["backend"], BACKENDS)
    _choice("eval.mia", p["eval"]["mia"], MIA_MODES)
    _choice("eval.reference", p["eval"]["reference"], REFERENCES)
    groups = p["forget"]["groups"]
    if groups is not None:
        if not isinstance(groups, list) or not groups or not all(
            isinstance(gr, (list, tuple)) and len(gr) == 2 and all(_is_int(v) and v >= 0 for v in gr) for gr in groups
        ):
            raise GrmuError(f"forget.groups must be a list of [y, a] pairs of non-negative integers, got {groups!r}")
    _choice("forget.kind", p["forget"]["kind"], FORGET_KINDS)
    _choice("forget.level", p["forget"]["level"], FORGET_LEVELS)
    check_memorization(p["memorization"], p["forget"]["kind"])
    if p["forget"]["count"] is not None:
        positive_int("forget.count", p["forget"]["count"])
        if p["forget"]["kind"] == "group":
            raise GrmuError("forget.count sets the size of a random or memorization forget set; with forget.kind "
                            "'group' the size is the ratio of the forget groups (set forget.count: null)")
        if isinstance(p["ratios"], list) and len(p["ratios"]) > 1:
            raise GrmuError(f"forget.count fixes the forget-set size, so ratios {p['ratios']} would repeat one forget "
                            "set; list a single ratio (it only names the runs)")
    multi = p["forget"]["multi_group"]
    if multi is not None:
        if isinstance(multi, bool) or multi not in MULTI_GROUPS:
            raise GrmuError(f"forget.multi_group {multi!r} is invalid; valid: null, 3 (9 groups), 5 (25 groups)")
        if groups is not None:
            raise GrmuError("forget.groups and forget.multi_group are both set; set one of them to null")
    boolean("reweight", p["reweight"])
    for section in OPEN_SECTIONS:
        if not isinstance(p[section], dict) or not all(isinstance(v, dict) for v in p[section].values()):
            raise GrmuError(f"'{section}' must map each name to a mapping of options, got {p[section]!r}")
    return p


def load_params(path: str | Path = "params.yaml") -> dict:
    """Load, validate and complete the params file (see ``validate``)."""
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise GrmuError.wrap(f"{path} is not valid YAML", e) from e
    return validate(raw if raw is not None else {})


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
