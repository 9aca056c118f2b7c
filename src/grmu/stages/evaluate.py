"""Stages `evaluate@{model}`: every metric of one kind of model (pretrain, a RETRAIN variant or
the unlearned one) on every (ratio, seed) forget split, from the outputs on every sample that
the model's own stage saved beside its checkpoint (``grmu.inference.save_outputs``): no model
runs here, so a change of the formulas (``grmu.metrics``) reruns no training and no inference.
``run`` evaluates one model on one forget split, ``run_model`` every one of a kind."""

from __future__ import annotations

from pathlib import Path

from grmu.outputs import load_outputs
from grmu.metrics import EVAL_SETS, split_metrics, subset_accuracies
from grmu.prepared import load_prepared
from grmu.runtime import run_info, write_json
from grmu.splits import load_forget, remaining_indices

MODELS = ("pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned")


def run(params: dict, prepared, outputs, forget_path, model_name: str, out, prep=None) -> dict:
    prep = prep or load_prepared(prepared, inputs=False)
    fs = load_forget(forget_path, prep)
    outs = load_outputs(outputs, len(prep.y))
    forget = fs["forget"]
    sets = dict(zip(EVAL_SETS, (remaining_indices(prep, forget), forget, prep.indices("val"), prep.indices("test"))))
    pred, loss = outs["pred"], outs["loss"]
    has_attrs = prep.n_attrs > 1  # without a group attribute the fairness metrics are undefined
    metrics = split_metrics(
        pred,
        loss,
        prep.y,
        prep.a,
        prep.g,
        sets,
        fs["groups"],
        prep.n_groups,
        params["eval"]["mia"],
        fairness=has_attrs,
        group_accuracy=has_attrs or fs.get("kind", "group") == "group",
    )
    metrics.update(subset_accuracies(pred, prep.y, fs.get("subsets", {})))  # memorization forget sets
    result = {
        "model": model_name,
        "ratio": fs["ratio"],
        "seed": fs["seed"],
        "groups": fs["groups"],
        "metrics": metrics,
        "trained": outs["info"],
        "run": run_info(fs["seed"]),
    }
    write_json(out, result)
    print(
        f"{model_name} r={fs['ratio']} seed={fs['seed']}: "
        + " ".join(f"{k}={metrics[k]:.1f}" for k in ("RA", "UA", "TA", "MIA", "MIA_SVC", "EO", "GA") if k in metrics)
    )
    return result


def outputs_file(models_dir, model: str, ratio, seed) -> Path:
    """Where the stage of ``model`` saved its outputs: PRETRAIN per seed, the others per ratio."""
    base = Path(models_dir) / model
    return base / f"{seed}.npz" if model == "pretrain" else base / str(seed) / f"{ratio}.npz"


def run_model(params: dict, prepared, model: str, models_dir, forget_dir, out_dir) -> list[dict]:
    """``run`` for every (ratio, seed): outputs under ``models_dir/model`` (``outputs_file``),
    forget sets ``forget_dir/{seed}/{ratio}.json``, results ``out_dir/{ratio}-{seed}.json``."""
    prep = load_prepared(prepared, inputs=False)
    return [
        run(
            params,
            prepared,
            outputs_file(models_dir, model, r, s),
            Path(forget_dir) / str(s) / f"{r}.json",
            model,
            Path(out_dir) / f"{r}-{s}.json",
            prep,
        )
        for r in params["ratios"]
        for s in params["seeds"]
    ]
