"""Stage `audit_unlearn@{ratio}`: each of `audit_train`'s N originals unlearned by the
experiment's ``method`` (with ``reweight``) with its own seed, model by model; their logits on the
forget examples and accuracies, as ``audit_train`` saves its populations (docs/audit.md)."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from grmu.models import load_checkpoint, new_model
from grmu.prepared import load_prepared
from grmu.runtime import run_info
from grmu.splits import load_forget, remaining_indices
from grmu.stages.audit_train import audit_seeds, outputs, save_population
from grmu.stages.unlearn import unlearn_model


def run(params: dict, prepared, forget_path, trained_dir, out) -> dict:
    prep = load_prepared(prepared)
    fs = load_forget(forget_path, prep)
    forget = fs["forget"]
    remaining = remaining_indices(prep, forget)
    seeds, bs = audit_seeds(params)["original"], params["eval"]["batch_size"]
    logits, accs, t0 = [], [], time.time()
    for seed in tqdm(seeds, desc=f"audit unlearn {params['method']}", unit="model", leave=False):
        model = new_model(params["model"], prep, seed, load_weights=False)
        load_checkpoint(Path(trained_dir) / "original" / f"{seed}.pt", model)
        model, _, _ = unlearn_model(params, prep, model, fs, seed)
        lg, acc = outputs(model, prep, forget, remaining, bs, f"audit unlearned model seed {seed}")
        logits.append(lg)
        accs.append(acc)
    seconds = time.time() - t0
    info = {
        "ratio": fs["ratio"],
        "models": len(seeds),
        "method": params["method"],
        "reweight": params["reweight"],
        "run": run_info(seeds[0]),
    }  # no wall time in the file (printed below): a rerun writes the same bytes
    save_population(out, {"unlearned": logits}, {"unlearned": accs}, forget, info)
    print(f"audit r={fs['ratio']}: {len(seeds)} models unlearned by {params['method']} in {seconds:.1f}s")
    return info
