"""Training protocols: the model and the PRETRAIN / RETRAIN settings of a dataset.

A protocol is a YAML file in this folder (``<name>.yaml``; optional ``base: <other protocol>``,
whose values come first) with any of the sections ``model``, ``train`` and ``retrain`` of
``params.yaml``::

    description: "CelebA, the paper's PRETRAIN/RETRAIN (fact sheet §4.2)"
    model: {arch: resnet18, pretrained: "{data_dir}/resnet18.a1_in1k.safetensors"}
    train: {epochs: 30, batch_size: 32, lr: 0.01, weight_decay: 1.0e-4, warmup_epochs: 2}
    retrain: {gdro: {lr: 0.1, batch_size: 256, eta: 0.1}}

``{data_dir}`` in a protocol's text is replaced by the run's ``data_dir``. Precedence, lowest
first: the built-in defaults (``grmu.schema``) < the protocol < ``params.yaml``, key by key; a key left
``null`` in ``params.yaml`` takes the protocol's value. One exception: a protocol's
``model.pretrained`` belongs to its ``model.arch``, so when ``params.yaml`` picks another
architecture, ``pretrained`` left null is the default (``none``). ``protocol: auto`` uses the protocol
named like the dataset when there is one (the embedded datasets have none: the built-in
defaults are their small CPU setup). The unlearning hyperparameters are the recipes' (``grmu.recipes``).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

from grmu import GrmuError
from grmu.runtime import read_config
from grmu.schema import PROTOCOL_DEFAULTS

HERE = Path(__file__).parent
# the value of a model / train / retrain key that neither params.yaml nor the protocol sets
# (declared in grmu.schema: the embedded datasets' small CPU setup, a small CNN, 10 epochs); a
# RETRAIN variant's lr / batch_size / precision left null trains with train's / the model's
DEFAULTS = PROTOCOL_DEFAULTS
FILE_KEYS = {"description", "base", *DEFAULTS}


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def _check_section(name: str, given, defaults: dict, prefix: str) -> None:
    if not isinstance(given, dict):
        raise GrmuError(f"protocol {name}: '{prefix}' must be a mapping, got {given!r}")
    for key, value in given.items():
        if key not in defaults:
            raise GrmuError(f"protocol {name}: unknown key '{prefix}.{key}'; valid: {', '.join(defaults)}")
        if isinstance(defaults[key], dict):
            _check_section(name, value, defaults[key], f"{prefix}.{key}")


def _merge(low: dict, high: dict) -> dict:
    out = copy.deepcopy(low)
    for key, value in high.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@lru_cache(maxsize=None)
def _load(name: str) -> dict:
    return _read(name, ())


def read_yaml(kind: str, folder: Path, name: str, file_keys, names: list[str]) -> tuple[Path, dict]:
    """The mapping in ``folder/{name}.yaml`` (a protocol or a recipe: ``kind``), with only
    ``file_keys``; one line naming the file otherwise. ``name`` must be one of ``names``: a name,
    never a path, since a file elsewhere would be read but not tracked by DVC."""
    path = folder / f"{name}.yaml"
    if name not in names:
        raise GrmuError(
            f"unknown {kind} '{name}'; valid: auto, none, {', '.join(names)} "
            f"(a new {kind} is a YAML file in src/grmu/{folder.name}/, which the stages track)"
        )
    try:
        data = yaml.safe_load(read_config(path))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise GrmuError.wrap(f"{kind} {name}: {path} is not valid YAML", e) from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise GrmuError(f"{kind} {name}: {path} must hold a mapping with keys {sorted(file_keys)}, got {data!r:.80}")
    bad = set(data) - set(file_keys)
    if bad:
        raise GrmuError(f"{kind} {name}: unknown key(s) {sorted(bad)}; valid: {sorted(file_keys)}")
    return path, data


def base_of(kind: str, name: str, path: Path, data: dict, chain: tuple, names: list[str]) -> str | None:
    """The ``base`` that file ``path`` of ``name`` names (None: none), checked: a known name that
    makes no cycle with ``chain`` (the files that led here)."""
    base = data.get("base")
    if not base:
        return None
    if not isinstance(base, str):
        raise GrmuError(f"{kind} {name}: base must be the name of another {kind}, got {base!r:.80}")
    if base in (*chain, name):
        cycle = " -> ".join((*chain, name, base))
        raise GrmuError(f"{kind} {name}: 'base' in {path} makes a cycle ({cycle}); remove one of them")
    if base not in names:
        raise GrmuError(f"{kind} {name}: base '{base}' in {path} is unknown; valid: {', '.join(names)}")
    return base


def _read(name: str, chain: tuple) -> dict:
    """Protocol ``name`` with its ``base`` chain (``chain``: the protocols that lead here, to
    refuse a cycle), checked; one line naming the file otherwise."""
    path, data = read_yaml("protocol", HERE, name, FILE_KEYS, available())
    for section, defaults in DEFAULTS.items():
        _check_section(name, data.get(section, {}), defaults, section)
    values = {s: data.get(s, {}) for s in DEFAULTS}
    base = base_of("protocol", name, path, data, chain, available())
    if base:  # another protocol's values first, this file's override them
        values = _merge(_read(base, (*chain, name))["values"], values)
    return {"description": data.get("description", ""), "values": values}


def load_protocol(name: str) -> dict:
    """``{"description": str, "values": {"model": {...}, "train": {...}, "retrain": {...}}}``
    of protocol ``name`` (with its base), checked for unknown keys."""
    return copy.deepcopy(_load(name))


def chosen_file(name: str, dataset: str, names: list[str], load) -> str | None:
    """The value of a ``recipe`` / ``protocol`` param resolved: ``none`` -> None, ``auto`` -> the
    file named like ``dataset`` (None when there is none), else ``name`` itself once ``load``
    has accepted it (it refuses unknown names)."""
    if name == "none":
        return None
    if name == "auto":
        return dataset if dataset in names else None
    load(name)
    return name


def protocol_name(params: dict) -> str | None:
    """The protocol a run uses: ``params['protocol']`` with ``auto`` resolved; None for none."""
    return chosen_file(params.get("protocol", "auto"), params["dataset"], available(), _load)


def _pick(given, proto, default, data_dir: str, key: str, source: dict):
    if isinstance(default, dict):
        out = {}
        for sub, sub_default in default.items():
            out[sub] = _pick(
                (given or {}).get(sub), (proto or {}).get(sub), sub_default, data_dir, f"{key}.{sub}", source
            )
        return out
    if given is not None:
        source[key] = "params"
        return given
    if proto is not None:
        source[key] = "protocol"
        return proto.replace("{data_dir}", data_dir) if isinstance(proto, str) else proto
    source[key] = "default"
    return default


def resolve(params: dict) -> tuple[dict, dict]:
    """``(sections, source)``: the final ``model``, ``train`` and ``retrain`` sections of a run
    (params over the protocol over ``DEFAULTS``) and, per dotted key, where its value came from
    (``params``, ``protocol`` or ``default``)."""
    name = protocol_name(params)
    values = load_protocol(name)["values"] if name else {}
    sections, source = {}, {}
    for section, defaults in DEFAULTS.items():
        sections[section] = _pick(
            params.get(section) or {}, values.get(section), defaults, str(params["data_dir"]), section, source
        )
    proto_model = values.get("model") or {}
    if source["model.pretrained"] == "protocol" and sections["model"]["arch"] != proto_model.get("arch"):
        sections["model"]["pretrained"] = DEFAULTS["model"]["pretrained"]  # the weights of another architecture
        source["model.pretrained"] = "default"
    return sections, source


def protocol_table(name: str, data_dir: str = "<data_dir>") -> str:
    """Every key of model / train / retrain under protocol ``name``, marked where it is the default."""
    sections, source = resolve({"protocol": name, "dataset": name, "data_dir": data_dir})
    lines = [f"{name} (training protocol): {load_protocol(name)['description']}"]
    for key, src in source.items():
        section, *rest = key.split(".")
        value = sections[section]
        for part in rest:
            value = value[part]
        if value is None:
            value = "as model" if key.endswith("precision") else "as train"
        lines.append(f"  {key:28s} {value}{'' if src == 'protocol' else '  (default)'}")
    return "\n".join(lines)
