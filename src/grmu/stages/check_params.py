"""Stage `check_params`: validate the whole params.yaml before anything else runs.

It depends on every key of the file, so any edit (a typo'd key, an unknown method or
dataset name, a bad value, a method option outside its declared range, a key that the chosen
model would ignore) is checked by the next `dvc repro` / `dvc exp run`, even when no other
stage would rerun; `prepare` depends on its output, so every stage runs after it. The output
holds only "ok", so a valid edit reruns nothing else."""

from __future__ import annotations

from grmu import GrmuError
from grmu.config import dataset_options, section_options
from grmu.data import get_dataset
from grmu.methods import checked_options, get_method
from grmu.models import MODELS
from grmu.recipes import resolve
from grmu.runtime import write_text

# architectures that read model.pretrained (the others are randomly initialised)
READS_PRETRAINED = ("resnet18", "bert")


def run(params: dict, out) -> None:
    dataset = get_dataset(params["dataset"])
    for name in params["datasets"]:
        dataset_options(params, get_dataset(name))
    for name in params["methods"]:  # every method's options: known keys, values in their declared ranges
        spec = get_method(name)
        checked_options(spec, section_options(params, "methods", name, spec.options))
    method = get_method(params["method"])
    for ratio in params["ratios"]:
        settings = resolve(params, method.options, ratio)  # the recipe, its keys and the resolved values
        checked_options(method, settings["options"])  # the recipe's values too
        if method.check is not None:
            method.check(settings["options"], params)
    arch = MODELS.get(params["model"]["arch"]).name
    if params["model"]["pretrained"] != "none" and arch not in READS_PRETRAINED:
        raise GrmuError(
            f"model.pretrained '{params['model']['pretrained']}' would be ignored: model.arch {arch} is "
            f"randomly initialised; set model.pretrained: none (weights are read by "
            f"{', '.join(READS_PRETRAINED)})"
        )
    if params["forget"]["multi_group"] is not None and dataset.name != "fairface":
        raise GrmuError(
            f"forget.multi_group is only supported by fairface; dataset '{dataset.name}' has no "
            "multi-group forget sets (set forget.multi_group: null)"
        )
    if params["audit"]["ratios"]:
        from grmu.stages.audit_train import check as check_audit

        check_audit(params)  # audit.ensemble on with a model the ensemble cannot pack
    write_text(out, "ok\n")
    print(f"params ok: dataset {dataset.name}, method {method.name}, model {arch}")
