"""The body of each DVC stage, as plain functions (the scripts in ``stages/`` only parse
arguments and call these). Each one reads its inputs, computes, and writes its outputs
atomically, so a failed stage leaves nothing half-written behind."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.config import section_options
from grmu.runtime import device, run_info, seed_everything, write_json

REFERENCE_VARIANTS = ("erm", "reweight", "gdro")


def prepare(params: dict, out_dir: str | Path) -> dict:
    """Build the dataset named by ``params['dataset']`` into ``out_dir``."""
    from grmu.data import get_dataset, save_prepared

    spec = get_dataset(params["dataset"])
    options = section_options(params, "datasets", spec.name, spec.options)
    table, inputs, info = spec.build(options, Path(params["data_dir"]))
    meta = {"dataset": spec.name, "options": options, **info, "default_forget_groups": spec.forget_groups,
            "input_shape": list(inputs.shape[1:]), "run": run_info()}
    save_prepared(out_dir, table, inputs, meta)
    counts = {s: int((table["split"] == s).sum()) for s in ("train", "val", "test")}
    print(f"prepared {spec.name}: {counts}; default forget groups {spec.forget_groups}")
    return meta


def forget_set(params: dict, prepared: str | Path, ratio: float, seed: int, out: str | Path) -> dict:
    from grmu.data import load_prepared
    from grmu.splits import forget_groups, forget_pool, resolve_groups, sample_forget, save_forget

    prep = load_prepared(prepared)
    groups = resolve_groups(prep, forget_groups(params["forget"], prep.meta))
    forget = sample_forget(prep, groups, ratio, seed)
    pool = forget_pool(prep, groups)
    save_forget(out, forget, groups, ratio, seed, len(pool))
    print(f"forget set r={ratio} seed={seed}: {len(forget)} of {len(pool)} samples of groups {groups}")
    return {"size": len(forget), "pool": len(pool)}


def _new_model(params: dict, prep, seed: int, load_weights: bool = True):
    """A freshly seeded model; ``load_weights=False`` when a checkpoint is loaded over it next."""
    from grmu.models import model_for

    seed_everything(seed)
    return model_for(params["model"], prep, load_weights=load_weights).to(device())


def _live(live_dir):
    if live_dir is None:
        return None
    from dvclive import Live

    return Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)


def _end_live(live, key: str, seconds: float) -> None:
    """Close a dvclive run, with the wall time in its summary (``metrics.json``). The time is
    kept out of the checkpoint so that a rerun with the same params writes the same bytes and
    DVC does not rerun the stages downstream of it."""
    if live is not None:
        live.summary[key] = round(seconds, 3)
        live.end()


def train_reference(params: dict, prepared, seed: int, out, live_dir=None, variant: str | None = None,
                    forget_path=None) -> dict:
    """PRETRAIN (``variant=None``: all of train) or RETRAIN (``erm`` / ``reweight`` / ``gdro``:
    the remaining set only). Returns the best-validation-accuracy epoch."""
    from grmu.data import load_prepared
    from grmu.models import save_checkpoint
    from grmu.robust import GroupDRO, group_balanced_weights, reweight_weights
    from grmu.splits import load_forget, remaining_indices
    from grmu.train import Pass, ce_loss, fit

    prep = load_prepared(prepared)
    cfg = dict(params["train"])
    train_idx = prep.indices("train")
    if variant is None:
        idx, name = train_idx, "pretrain"
    else:
        if variant not in REFERENCE_VARIANTS:
            raise GrmuError(f"unknown retrain variant '{variant}'; valid: {', '.join(REFERENCE_VARIANTS)}")
        if forget_path is None:
            raise GrmuError("retrain needs a forget set file")
        forget = load_forget(forget_path)["forget"]
        idx, name = remaining_indices(prep, forget), f"retrain_{variant}"
        assert not np.isin(idx, forget).any(), "a forget sample leaked into the retrain set"
    weights, loss = None, ce_loss
    if variant is not None:
        overrides = params["retrain"][variant]
        cfg["lr"] = overrides["lr"] or cfg["lr"]
        cfg["batch_size"] = overrides["batch_size"] or cfg["batch_size"]
    if variant == "reweight":
        weights = reweight_weights(prep.g[train_idx], prep.g[idx], prep.n_groups)
    elif variant == "gdro":
        weights = group_balanced_weights(prep.g[idx], prep.n_groups)
        dro = GroupDRO(prep.n_groups, params["retrain"]["gdro"]["eta"])

        def loss(model, x, y, g):
            return dro(model(x), y, g)

    model = _new_model(params, prep, seed)
    live = _live(live_dir)
    p = Pass("train", idx, loss, cfg["batch_size"], weights)
    t0 = time.time()
    model, history = fit(model, prep, lambda e: [p], cfg, seed=seed, val_idx=prep.indices("val"),
                         select_best=True, live=live, desc=f"{name} s{seed}")
    seconds = time.time() - t0
    info = {"name": name, "seed": seed, "n_train": int(len(idx)), "history": history, "run": run_info(seed)}
    _end_live(live, "train_seconds", seconds)
    save_checkpoint(out, model.cpu(), info)
    best = max(h["val_acc"] for h in history)
    print(f"{name} seed={seed}: best val acc {best:.2f} in {seconds:.1f}s")
    return {**info, "train_seconds": seconds}


def unlearn(params: dict, prepared, pretrained, forget_path, seed: int, out, live_dir=None) -> dict:
    """Run ``params['method']`` from the PRETRAIN checkpoint; keep the last epoch."""
    from grmu.data import load_prepared
    from grmu.methods import UnlearnContext, get_method
    from grmu.models import load_checkpoint, save_checkpoint
    from grmu.recipes import resolve
    from grmu.splits import load_forget, remaining_indices

    spec = get_method(params["method"])
    prep = load_prepared(prepared)
    fs = load_forget(forget_path)
    forget = fs["forget"]
    settings = resolve(params, spec.options, fs["ratio"])
    options = settings["options"]
    model = _new_model(params, prep, seed, load_weights=False)
    load_checkpoint(pretrained, model)
    model.to(device())
    live = _live(live_dir)
    ctx = UnlearnContext(model=model, prep=prep, forget_idx=forget, remaining_idx=remaining_indices(prep, forget),
                         cfg=settings["unlearn"], options=options, reweight=params["reweight"], seed=seed, live=live)
    t0 = time.time()
    model = spec.run(ctx)
    info = {"name": spec.name, "reweight": params["reweight"], "recipe": settings["recipe"], "unlearn": settings["unlearn"],
            "options": options, "source": settings["source"], "seed": seed, "run": run_info(seed)}
    seconds = time.time() - t0
    _end_live(live, "unlearn_seconds", seconds)
    save_checkpoint(out, model.cpu(), info)
    print(f"unlearn {spec.name}{'+reweight' if params['reweight'] else ''} seed={seed}: {seconds:.1f}s")
    return {**info, "unlearn_seconds": seconds}


def evaluate(params: dict, prepared, checkpoint, forget_path, model_name: str, out) -> dict:
    from grmu.data import load_prepared
    from grmu.metrics import evaluate as evaluate_metrics
    from grmu.models import load_checkpoint, model_for
    from grmu.splits import load_forget, remaining_indices

    prep = load_prepared(prepared)
    fs = load_forget(forget_path)
    model = model_for(params["model"], prep, load_weights=False)
    info = load_checkpoint(checkpoint, model)
    model.to(device()).eval()
    metrics = evaluate_metrics(model, prep, fs["forget"], remaining_indices(prep, fs["forget"]), fs["groups"],
                               params["eval"]["mia"], params["eval"]["batch_size"])
    result = {"model": model_name, "ratio": fs["ratio"], "seed": fs["seed"], "groups": fs["groups"],
              "metrics": metrics, "trained": {k: v for k, v in info.items() if k != "history"},
              "run": run_info(fs["seed"])}
    write_json(out, result)
    print(f"{model_name} r={fs['ratio']} seed={fs['seed']}: " +
          " ".join(f"{k}={metrics[k]:.1f}" for k in ("RA", "UA", "TA", "MIA", "EO", "GA")))
    return result

