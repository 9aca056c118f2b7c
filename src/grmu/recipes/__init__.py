"""Named hyperparameter recipes for the unlearning methods.

A recipe is a YAML file in this folder (``<name>.yaml``; optional ``base: <other recipe>``,
whose entries come first) holding a list of entries::

    - {method: miu, reweight: true, ratio: 0.9,
       unlearn: {lr: 0.1, batch_size: 256}, options: {lambda_mi: 1}}

An entry applies when each of its match keys (``method``, ``reweight``, ``ratio``,
``multi_group``; all optional) equals the run's value; later matching entries override
earlier ones. ``unlearn`` sets keys of the shared ``unlearn`` section, ``options`` the
method's own options (``methods.<method>``).

Precedence, lowest first: built-in defaults (``unlearn`` in ``grmu.schema``, each method's
declared options) < recipe < ``params.yaml``. A key set to ``null``
in ``params.yaml`` (or left out) takes the recipe's value, so ``dvc exp run -S unlearn.lr=0.1``
always wins. ``recipe: auto`` uses the recipe named like the dataset when there is one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


from grmu import GrmuError
from grmu.config import check_loop_section, section_options
from grmu.protocols import base_of, chosen_file, read_yaml
from grmu.schema import UNLEARN_DEFAULTS  # the paper's common setup (fact sheet §5.1)

HERE = Path(__file__).parent
MATCH_KEYS = ("method", "reweight", "ratio", "multi_group")
ENTRY_KEYS = set(MATCH_KEYS) | {"unlearn", "options", "note"}
FILE_KEYS = {"description", "entries", "base"}


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_recipe(name: str) -> dict:
    """``{"description": str, "entries": [...]}`` of recipe ``name`` (its ``base`` chain's
    entries first), checked: valid YAML, known keys, entries that are mappings, no ``base``
    cycle; one line naming the file otherwise."""
    return _load(name, ())


def _load(name: str, chain: tuple) -> dict:
    path, data = read_yaml("recipe", HERE, name, FILE_KEYS, available())
    if not isinstance(data.get("entries") or [], list):
        raise GrmuError(f"recipe {name}: 'entries' in {path} must be a list of mappings, got {data['entries']!r:.80}")
    entries = list(data.get("entries") or [])
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise GrmuError(f"recipe {name}, entry {i}: must be a mapping of {sorted(ENTRY_KEYS)}, got {e!r:.80}")
        bad = set(e) - ENTRY_KEYS
        if bad:
            raise GrmuError(f"recipe {name}, entry {i}: unknown key(s) {sorted(bad)}; valid: {sorted(ENTRY_KEYS)}")
        for key in ("unlearn", "options"):
            if not isinstance(e.get(key) or {}, dict):
                raise GrmuError(f"recipe {name}, entry {i}: '{key}' must be a mapping, got {e[key]!r:.80}")
        if "ratio" in e and (isinstance(e["ratio"], bool) or not isinstance(e["ratio"], (int, float))):
            raise GrmuError(f"recipe {name}, entry {i}: ratio must be a number, got {e['ratio']!r:.80}")
    base = base_of("recipe", name, path, data, chain, available())
    if base:  # another recipe's entries first, this file's override them
        entries = _load(base, (*chain, name))["entries"] + entries
    return {"description": data.get("description", ""), "entries": entries}


def recipe_name(params: dict) -> str | None:
    """The recipe a run uses: ``params['recipe']`` with ``auto`` resolved; None for no recipe."""
    return chosen_file(params.get("recipe", "auto"), params["dataset"], available(), load_recipe)


def matches(entry: dict, context: dict) -> bool:
    for key in MATCH_KEYS:
        if key in entry:
            want, have = entry[key], context.get(key)
            if key == "ratio" and have is not None:
                if abs(float(want) - float(have)) > 1e-9:
                    return False
            elif want != have:
                return False
    return True


def recipe_values(name: str | None, context: dict) -> tuple[dict, dict]:
    """The ``unlearn`` keys and method options that recipe ``name`` sets for ``context``
    (``method``, ``reweight``, ``ratio``, ``multi_group``)."""
    unlearn, options = {}, {}
    if name is None:
        return unlearn, options
    for e in load_recipe(name)["entries"]:
        if matches(e, context):
            for key, value in (e.get("unlearn") or {}).items():  # nested sections (sam) merge key by key
                unlearn[key] = {**unlearn.get(key, {}), **value} if isinstance(value, dict) else value
            options.update(e.get("options") or {})
    return unlearn, options


def resolve(params: dict, method_defaults: dict, ratio: float) -> dict:
    """Final ``unlearn`` settings and method options for one run, with where each came from.

    Returns ``{"recipe", "unlearn", "options", "source"}``; ``source[key]`` is ``default``,
    ``recipe`` or ``params`` (keys of options are prefixed ``methods.<m>.``)."""
    method = params["method"]
    context = {
        "method": method,
        "reweight": params["reweight"],
        "ratio": ratio,
        "multi_group": (params.get("forget") or {}).get("multi_group"),
    }
    name = recipe_name(params)
    rec_unlearn, rec_options = recipe_values(name, context)
    section_options(params, "methods", method, method_defaults)  # refuses unknown option names
    given_options = (params.get("methods") or {}).get(method) or {}
    for key in rec_options:
        if key not in method_defaults:
            raise GrmuError(
                f"recipe {name} sets unknown option '{key}' of method {method}; "
                f"valid: {', '.join(sorted(method_defaults))}"
            )
    for key in rec_unlearn:
        if key not in UNLEARN_DEFAULTS:
            raise GrmuError(
                f"recipe {name} sets unknown key 'unlearn.{key}'; valid: {', '.join(sorted(UNLEARN_DEFAULTS))}"
            )
    out = {"recipe": name, "unlearn": {}, "options": {}, "source": {}}
    for section, defaults, rec, given, prefix in (
        ("unlearn", UNLEARN_DEFAULTS, rec_unlearn, params.get("unlearn") or {}, "unlearn."),
        ("options", method_defaults, rec_options, given_options, f"methods.{method}."),
    ):
        for key, default in defaults.items():
            if isinstance(default, dict):  # a nested section (unlearn.sam): key by key
                out[section][key] = {}
                for sub, sub_default in default.items():
                    value, src = _pick((given.get(key) or {}).get(sub), (rec.get(key) or {}), sub, sub_default)
                    out[section][key][sub] = value
                    out["source"][f"{prefix}{key}.{sub}"] = src
                continue
            value, src = _pick(given.get(key), rec, key, default)
            out[section][key] = value
            out["source"][prefix + key] = src
    check_loop_section("unlearn", out["unlearn"])
    return out


def _pick(given, rec: dict, key: str, default):
    """``(value, source)``: params (when not null) over the recipe over the default."""
    if given is not None:
        return given, "params"
    if key in rec:
        return rec[key], "recipe"
    return default, "default"


def recipe_table(name: str, ratios, multi_group=None) -> str:
    """What recipe ``name`` sets for each method, REWEIGHT setting and ratio, one line each."""
    from grmu.methods import list_methods

    lines = [f"{name}: {load_recipe(name)['description']}"]
    for spec in list_methods():
        for rw in (False, True):
            for r in ratios:
                unl, opts = recipe_values(
                    name, {"method": spec.name, "reweight": rw, "ratio": r, "multi_group": multi_group}
                )
                sets = " ".join([f"{k}={v}" for k, v in unl.items()] + [f"{k}={v}" for k, v in opts.items()])
                label = f"{spec.name}{'+reweight' if rw else ''}"
                lines.append(f"  {label:20s} r={r:<4g} {sets or '(built-in defaults)'}")
    return "\n".join(lines)
