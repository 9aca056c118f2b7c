"""RUM, the Refined-Unlearning Meta-algorithm (fact sheet §3): unlearn the memorization subsets
of a ``mix`` forget set one after another, each with its own method and settings."""

from __future__ import annotations

import copy

import numpy as np

from grmu import GrmuError
from grmu.config import check_loop_section
from grmu.memorization import SUBSETS
from grmu.methods import UnlearnContext, checked_options, get_method, register_method
from grmu.schema import UNLEARN_DEFAULTS, Rule

# upstream's shipped example (main_rum.py): low gets nothing, mid fine-tuning, high SalUn
DEFAULT_STEPS = [
    {"subset": "low", "method": "none"},
    {"subset": "mid", "method": "finetune"},
    {"subset": "high", "method": "salun"},
]
STEP_KEYS = ("subset", "method", "unlearn", "options")


def check_steps(steps) -> list[dict]:
    """``methods.rum.steps``: a list of ``{subset, method[, unlearn][, options]}``, each of the
    three subsets exactly once, each method registered (not ``rum``) or ``none``; one line
    otherwise."""
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        raise GrmuError(f"methods.rum.steps must be a non-empty list of {{subset, method}} mappings, got {steps!r}")
    seen = []
    for i, step in enumerate(steps):
        where = f"methods.rum.steps[{i}]"
        bad = set(step) - set(STEP_KEYS)
        if bad:
            raise GrmuError(f"unknown key '{where}.{sorted(bad)[0]}'; valid keys: {', '.join(STEP_KEYS)}")
        if step.get("subset") not in SUBSETS:
            raise GrmuError(f"{where}.subset '{step.get('subset')}' is unknown; valid: {', '.join(SUBSETS)}")
        if step["subset"] in seen:
            raise GrmuError(f"{where}.subset '{step['subset']}' is unlearned twice; list each subset once")
        seen.append(step["subset"])
        if step.get("method") in (None, "rum"):
            raise GrmuError(f"{where}.method must name a method other than rum, or none; got {step.get('method')!r}")
        if step["method"] != "none":
            get_method(step["method"])  # refuses unknown names with the list of valid ones
        for key in ("unlearn", "options"):
            if not isinstance(step.get(key, {}), dict):
                raise GrmuError(f"{where}.{key} must be a mapping, got {step[key]!r}")
    missing = [s for s in SUBSETS if s not in seen]
    if missing:  # a subset left out would never be unlearned, silently
        raise GrmuError(
            f"methods.rum.steps must list each of {', '.join(SUBSETS)} once (method none skips one); "
            f"missing: {', '.join(missing)}"
        )
    return steps


def check_settings(options: dict, params: dict) -> None:
    """What the ``check_params`` stage refuses before any stage runs: bad ``steps``, a step's
    unknown ``unlearn`` or option key or value, and a forget set that is not a memorization mix."""
    for i, step in enumerate(check_steps(options["steps"])):
        where = f"methods.rum.steps[{i}]"
        step_cfg(UNLEARN_DEFAULTS, step.get("unlearn") or {}, where)
        if step["method"] != "none":
            step_options(get_method(step["method"]), step, where)
    if params["forget"]["kind"] != "memorization" or params["forget"]["level"] != "mix":
        raise GrmuError(
            f"method rum unlearns the low, mid and high thirds of a mix forget set, but forget.kind is "
            f"'{params['forget']['kind']}' and forget.level '{params['forget']['level']}': use "
            "forget.kind memorization with forget.level mix"
        )


def step_options(spec, step: dict, where: str) -> dict:
    """A step's method options: its ``options`` over the method's declared defaults, checked
    against the declarations (errors name ``<where>.options.<key>``)."""
    given = step.get("options") or {}
    return checked_options(
        spec, {**spec.options, **{k: v for k, v in given.items() if v is not None}}, f"{where}.options"
    )


def step_cfg(cfg: dict, over: dict, where: str) -> dict:
    """The run's ``unlearn`` settings with a step's overrides (``sam`` key by key)."""
    bad = set(over) - set(cfg)
    if bad:
        raise GrmuError(f"unknown key '{where}.unlearn.{sorted(bad)[0]}'; valid keys: {', '.join(sorted(cfg))}")
    out = copy.deepcopy(cfg)
    for key, value in over.items():
        out[key] = {**out[key], **value} if key == "sam" and isinstance(value, dict) else value
    check_loop_section(f"{where}.unlearn", out)
    return out


@register_method(
    "rum",
    check=check_settings,
    options={
        "steps": Rule(
            DEFAULT_STEPS,
            "the steps in order, each subset (low, mid, high) once; method none skips one",
            lambda name, steps: check_steps(steps),
            "a list of {subset, method[, unlearn][, options]}",
        ),
    },
)
def rum(ctx: UnlearnContext):
    """RUM: unlearn the low, mid and high memorization thirds of a mix forget set one by one.

    The thirds of a ``forget.level: mix`` forget set are unlearned in the order of ``steps``,
    each with its own ``method`` (``none`` = leave the model as it is), ``unlearn`` overrides
    and method ``options``.

    Each step starts from the previous step's model (which is also that step's "original"), and
    its remaining set is the train split without every subset processed so far (upstream
    ``--sequential``: low step train − L, mid step train − L − M, high step train − L − M − H).
    Default steps: upstream's example, low → none, mid → finetune, high → salun. Needs a
    memorization forget set of level mix (``forget.kind: memorization``); ``reweight`` passes
    on to every step. One checkpoint at the end; each step's epochs follow one another in the
    dvclive log. A step's method gets its declared defaults, not the dataset's recipe for it:
    set what it needs in the step's ``options`` and ``unlearn``.
    """
    steps = check_steps(ctx.options["steps"])
    subsets = ctx.subsets or {}
    if set(subsets) != set(SUBSETS) or not np.array_equal(
        np.sort(np.concatenate([subsets[s] for s in SUBSETS])), np.sort(ctx.forget_idx)
    ):
        raise GrmuError(
            "method rum unlearns the low, mid and high thirds of a mix forget set: use forget.kind "
            "memorization with forget.level mix"
        )
    train = np.union1d(ctx.remaining_idx, ctx.forget_idx)
    done = np.zeros(0, dtype=np.int64)
    model = ctx.model
    for i, step in enumerate(steps):
        subset = subsets[step["subset"]]
        done = np.union1d(done, subset)
        if step["method"] == "none":
            print(f"rum step {i + 1}/{len(steps)}: {step['subset']} ({len(subset)} samples) left as it is")
            continue
        spec = get_method(step["method"])
        where = f"methods.rum.steps[{i}]"
        options = step_options(spec, step, where)
        sub = UnlearnContext(
            model=model,
            prep=ctx.prep,
            forget_idx=subset,
            remaining_idx=np.setdiff1d(train, done),
            cfg=step_cfg(ctx.cfg, step.get("unlearn") or {}, where),
            options=options,
            reweight=ctx.reweight,
            seed=ctx.seed,
            live=ctx.live,
        )
        print(f"rum step {i + 1}/{len(steps)}: {step['subset']} ({len(subset)} samples) with {step['method']}")
        model = spec.run(sub)
    return model
