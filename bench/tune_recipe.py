"""Grid search of unlearning hyperparameters on the current dataset: avg. gap against
RETRAIN+REWEIGHT (the paper's selection criterion), per method and REWEIGHT setting.

This is how the `colored_mnist` recipe (src/grmu/recipes/colored_mnist.yaml) was tuned.
Reference models are trained once per (ratio, seed) and cached in --work; every grid point
then runs the method and the evaluation in-process. Prints one line per grid point:
mean avg. gap over (ratio, seed), the per-ratio gaps, GA and TA.

    .venv/bin/python bench/tune_recipe.py --methods scrub miu --reweight both \\
        --grid unlearn.lr=0.01,0.001 methods.scrub.forgetting_epochs=1,2
"""
import argparse
import copy
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import yaml

from grmu.config import load_params, validate
from grmu.data import load_prepared
from grmu.metrics import avg_gap, evaluate
from grmu.models import load_checkpoint, model_for
from grmu.pipeline import forget_set, prepare, train_reference, unlearn
from grmu.runtime import device
from grmu.splits import load_forget, remaining_indices


def set_key(params: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = params
    for k in path:
        node = node.setdefault(k, {})
    node[last] = value


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    grid = []
    for item in items:
        key, _, values = item.partition("=")
        grid.append((key, [yaml.safe_load(v) for v in values.split(",")]))
    return grid


def metrics_of(params, prep_dir, ckpt, forget_path) -> dict:
    prep = load_prepared(prep_dir)
    fs = load_forget(forget_path)
    model = model_for(params["model"], prep, load_weights=False)
    load_checkpoint(ckpt, model)
    model.to(device()).eval()
    return evaluate(model, prep, fs["forget"], remaining_indices(prep, fs["forget"]), fs["groups"],
                    params["eval"]["mia"], params["eval"]["batch_size"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--work", default="/tmp/grmu_tune", help="cache of prepared data and reference models")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--reweight", choices=["true", "false", "both"], default="both")
    ap.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.9])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--set", nargs="*", default=[], help="base overrides key=value (e.g. train.epochs=20)")
    ap.add_argument("--grid", nargs="*", default=[], help="key=v1,v2,... (dotted params keys)")
    args = ap.parse_args()

    base = load_params(args.params)
    for key, values in parse_grid(args.set):
        set_key(base, key, values[0])
    base = validate(base)
    key = json.dumps([base[k] for k in ("dataset", "datasets", "model", "train", "forget")], sort_keys=True, default=str)
    work = Path(args.work) / hashlib.sha1(key.encode()).hexdigest()[:12]
    prep = work / "prep"
    if not (prep / "meta.json").exists():
        prepare(base, prep)
    refs = {}
    for r, s in itertools.product(args.ratios, args.seeds):
        f = work / f"forget-{r}-{s}.json"
        if not f.exists():
            forget_set(base, prep, r, s, f)
        for variant in (None, "reweight"):
            ck = work / (f"pretrain-{s}.pt" if variant is None else f"rw-{r}-{s}.pt")
            if not ck.exists():
                train_reference(base, prep, s, ck, variant=variant, forget_path=None if variant is None else f)
        mfile = work / f"rw-{r}-{s}.json"
        if not mfile.exists():
            mfile.write_text(json.dumps(metrics_of(base, prep, work / f"rw-{r}-{s}.pt", f)))
        refs[r, s] = json.loads(mfile.read_text())
    print("reference RETRAIN+REWEIGHT GA: " + ", ".join(f"r={r} s={s}: {m['GA']:.1f}" for (r, s), m in refs.items()))

    grid = parse_grid(args.grid)
    reweights = {"true": [True], "false": [False], "both": [False, True]}[args.reweight]
    lines = []
    for method, rw, combo in itertools.product(args.methods, reweights, itertools.product(*[v for _, v in grid])):
        p = copy.deepcopy(base)
        p["method"], p["reweight"] = method, rw
        for (key, _), value in zip(grid, combo):
            set_key(p, key, value)
        gaps, per_ratio, ga, ta = [], {}, [], []
        for r, s in itertools.product(args.ratios, args.seeds):
            out = work / "unlearned.pt"
            unlearn(p, prep, work / f"pretrain-{s}.pt", work / f"forget-{r}-{s}.json", s, out)
            m = metrics_of(p, prep, out, work / f"forget-{r}-{s}.json")
            gap = avg_gap(m, refs[r, s])
            gaps.append(gap)
            per_ratio.setdefault(r, []).append(gap)
            ga.append(m["GA"])
            ta.append(m["TA"])
        setting = " ".join(f"{k}={v}" for (k, _), v in zip(grid, combo))
        line = (f"{method:10s} rw={str(rw):5s} {setting:50s} gap {np.mean(gaps):6.2f} | "
                + " ".join(f"r{r}:{np.mean(v):6.2f}" for r, v in per_ratio.items())
                + f" | GA {np.mean(ga):5.1f} TA {np.mean(ta):5.1f}")
        print(line, flush=True)
        lines.append(line)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
