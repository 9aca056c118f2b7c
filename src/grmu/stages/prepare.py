"""Stage `prepare`: build the dataset named by `dataset` into data/prepared/."""

from __future__ import annotations

from pathlib import Path

from grmu.config import dataset_options
from grmu.data import get_dataset
from grmu.prepared import save_prepared
from grmu.runtime import run_info


def run(params: dict, out_dir: str | Path) -> dict:
    spec = get_dataset(params["dataset"])
    options = dataset_options(params, spec)
    table, inputs, info = spec.build(options, Path(params["data_dir"]))
    meta = {
        "dataset": spec.name,
        "options": options,
        **info,
        "default_forget_groups": spec.forget_groups,
        "input_shape": list(inputs.shape[1:]),
        "run": run_info(),
    }
    save_prepared(out_dir, table, inputs, meta)
    counts = {s: int((table["split"] == s).sum()) for s in ("train", "val", "test")}
    print(f"prepared {spec.name}: {counts}; default forget groups {spec.forget_groups}")
    return meta
