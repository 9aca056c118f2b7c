"""Stage `unlearn@{seed}`: apply `method` (with `reweight`) to the PRETRAIN checkpoint of the
seed, once per ratio (its forget set); keep the last epoch (unlearning does no model selection);
save each checkpoint and its outputs on every sample. ``run`` unlearns one forget set,
``run_seed`` every ratio's."""

from __future__ import annotations

import time

from grmu.outputs import outputs_path, save_outputs
from grmu.methods import UnlearnContext, get_method
from grmu.models import load_checkpoint, new_model, save_checkpoint
from grmu.prepared import load_prepared
from grmu.stages import ratio_files
from grmu.recipes import resolve
from grmu.runtime import close_live, device, live_run, run_info
from grmu.splits import load_forget, remaining_indices


def unlearn_model(params: dict, prep, model, fs: dict, seed: int, live=None):
    """Apply ``params['method']`` (with ``reweight``) to ``model`` for the forget set ``fs``
    (``grmu.splits.load_forget``): ``(model, info, seconds)``."""
    spec = get_method(params["method"])
    forget = fs["forget"]
    settings = resolve(params, spec.options, fs["ratio"])
    options = settings["options"]
    model.to(device())
    ctx = UnlearnContext(
        model=model,
        prep=prep,
        forget_idx=forget,
        remaining_idx=remaining_indices(prep, forget),
        cfg=settings["unlearn"],
        options=options,
        reweight=params["reweight"],
        seed=seed,
        live=live,
        subsets=fs.get("subsets"),
    )
    t0 = time.time()
    model = spec.run(ctx)
    seconds = time.time() - t0
    info = {
        "name": spec.name,
        "reweight": params["reweight"],
        "recipe": settings["recipe"],
        "unlearn": settings["unlearn"],
        "options": options,
        "source": settings["source"],
        "seed": seed,
        "run": run_info(seed),
    }
    return model, info, seconds


def run(params: dict, prepared, pretrained, forget_path, seed: int, out, live_dir=None) -> dict:
    get_method(params["method"])  # an unknown method is one line before anything is read
    prep = load_prepared(prepared)
    fs = load_forget(forget_path, prep)
    model = new_model(params["model"], prep, seed, load_weights=False)
    load_checkpoint(pretrained, model)
    with live_run(live_dir) as live:
        model, info, seconds = unlearn_model(params, prep, model, fs, seed, live)
        close_live(live, "unlearn_seconds", seconds)
        save_outputs(
            outputs_path(out),
            model,
            prep,
            params["eval"]["batch_size"],
            info,
            f"unlearn {info['name']} r={fs['ratio']} seed={seed}",
        )
        save_checkpoint(out, model.cpu(), info)
    print(f"unlearn {info['name']}{'+reweight' if params['reweight'] else ''} seed={seed}: {seconds:.1f}s")
    return {**info, "unlearn_seconds": seconds}


def run_seed(params: dict, prepared, pretrained, forget_dir, seed: int, out_dir, live_dir=None) -> list[dict]:
    """``run`` for every ratio (``grmu.stages.ratio_files``: where each one's files lie)."""
    files = ratio_files(params, forget_dir, out_dir, live_dir)
    return [run(params, prepared, pretrained, forget, seed, out, live) for forget, out, live in files]
