"""Stage `unlearn@{ratio}-{seed}`: apply `method` (with `reweight`) to the PRETRAIN checkpoint of
the same seed; keep the last epoch (unlearning does no model selection)."""
from __future__ import annotations

import time

from grmu.methods import UnlearnContext, get_method
from grmu.models import load_checkpoint, new_model, save_checkpoint
from grmu.prepared import load_prepared
from grmu.recipes import resolve
from grmu.runtime import close_live, device, live_run, run_info
from grmu.splits import load_forget, remaining_indices


def run(params: dict, prepared, pretrained, forget_path, seed: int, out, live_dir=None) -> dict:
    spec = get_method(params["method"])
    prep = load_prepared(prepared)
    fs = load_forget(forget_path, prep)
    forget = fs["forget"]
    settings = resolve(params, spec.options, fs["ratio"])
    options = settings["options"]
    model = new_model(params["model"], prep, seed, load_weights=False)
    load_checkpoint(pretrained, model)
    model.to(device())
    with live_run(live_dir) as live:
        ctx = UnlearnContext(model=model, prep=prep, forget_idx=forget, remaining_idx=remaining_indices(prep, forget),
                             cfg=settings["unlearn"], options=options, reweight=params["reweight"], seed=seed, live=live,
                             subsets=fs.get("subsets"))
        t0 = time.time()
        model = spec.run(ctx)
        info = {"name": spec.name, "reweight": params["reweight"], "recipe": settings["recipe"],
                "unlearn": settings["unlearn"], "options": options, "source": settings["source"], "seed": seed,
                "run": run_info(seed)}
        seconds = time.time() - t0
        close_live(live, "unlearn_seconds", seconds)
        save_checkpoint(out, model.cpu(), info)
    print(f"unlearn {spec.name}{'+reweight' if params['reweight'] else ''} seed={seed}: {seconds:.1f}s")
    return {**info, "unlearn_seconds": seconds}
