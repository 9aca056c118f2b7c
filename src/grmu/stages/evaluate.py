"""Stages `evaluate@{model}-{ratio}-{seed}` and `evaluate_pretrain@{ratio}-{seed}`: every metric
of one model on one forget split (inference in ``grmu.inference``, formulas in ``grmu.metrics``)."""
from __future__ import annotations

from grmu.inference import predictions
from grmu.metrics import EVAL_SETS, split_metrics, subset_accuracies
from grmu.models import load_checkpoint, new_model, run_precision
from grmu.prepared import load_prepared
from grmu.runtime import device, run_info, write_json
from grmu.splits import load_forget, remaining_indices


def run(params: dict, prepared, checkpoint, forget_path, model_name: str, out) -> dict:
    prep = load_prepared(prepared)
    fs = load_forget(forget_path, prep)
    model = new_model(params["model"], prep, seed=None, load_weights=False)
    info = load_checkpoint(checkpoint, model)
    model.to(device()).eval()
    if "precision" in info.get("model", {}):  # a reference model is evaluated in the precision it trained in
        model.precision = run_precision(info["model"]["precision"], device())
    forget = fs["forget"]
    sets = dict(zip(EVAL_SETS, (remaining_indices(prep, forget), forget, prep.indices("val"), prep.indices("test"))))
    pred, loss = predictions(model, prep, sets, params["eval"]["batch_size"])
    has_attrs = prep.n_attrs > 1  # without a group attribute the fairness metrics are undefined
    metrics = split_metrics(pred, loss, prep.y, prep.a, prep.g, sets, fs["groups"], prep.n_groups, params["eval"]["mia"],
                            fairness=has_attrs, group_accuracy=has_attrs or fs.get("kind", "group") == "group")
    metrics.update(subset_accuracies(pred, prep.y, fs.get("subsets", {})))  # memorization forget sets
    result = {"model": model_name, "ratio": fs["ratio"], "seed": fs["seed"], "groups": fs["groups"],
              "metrics": metrics, "trained": {k: v for k, v in info.items() if k != "history"},
              "run": run_info(fs["seed"])}
    write_json(out, result)
    print(f"{model_name} r={fs['ratio']} seed={fs['seed']}: " +
          " ".join(f"{k}={metrics[k]:.1f}" for k in ("RA", "UA", "TA", "MIA", "MIA_SVC", "EO", "GA") if k in metrics))
    return result
