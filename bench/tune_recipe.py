"""Grid search of unlearning hyperparameters on the current dataset: avg. gap against the
reference model (``eval.reference``; RETRAIN+REWEIGHT by default, the paper's selection
criterion), per method and REWEIGHT setting; ToW is printed beside it. Tune on seeds that are
not reported (e.g. ``--seeds 10 11``).

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

from grmu.config import validate
from grmu.outputs import outputs_path
from grmu.metrics import METRIC_KEYS, avg_gap, tow
from grmu.stages import evaluate, forget_set, prepare, pretrain, retrain, unlearn

ROOT = Path(__file__).resolve().parents[1]


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


def params_with(path, overrides: list[str]) -> dict:
    """The params file at ``path`` with ``key=value`` overrides, validated (so that a dataset
    set here gets its own training protocol)."""
    params = yaml.safe_load(Path(path).read_text())
    for key, values in parse_grid(overrides):
        set_key(params, key, values[0])
    return validate(params)


def metrics_of(params, prep_dir, ckpt, forget_path, model_name: str, out: Path) -> dict:
    """The `evaluate` stage on the outputs saved beside ``ckpt`` (its result file goes to ``out``):
    the metrics dict."""
    return evaluate.run(params, prep_dir, outputs_path(ckpt), forget_path, model_name, out)["metrics"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--work", default="/tmp/grmu_tune", help="cache of prepared data and reference models")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--reweight", choices=["true", "false", "both"], default="both")
    ap.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.9])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--set", nargs="*", default=[], help="base overrides key=value (e.g. train.epochs=20)")
    ap.add_argument("--grid", nargs="*", default=[], help="key=v1,v2,... (dotted params keys)")
    args = ap.parse_args()

    base = params_with(args.params, args.set)
    # what the cached prepared data, reference models and their metrics depend on
    cached_by = ("dataset", "datasets", "model", "train", "retrain", "forget", "eval")
    key = json.dumps([base[k] for k in cached_by], sort_keys=True, default=str)
    work = Path(args.work) / hashlib.sha1(key.encode()).hexdigest()[:12]
    prep = work / "prep"
    if not (prep / "meta.json").exists():
        prepare.run(base, prep)
    refs = {}
    reference = base["eval"]["reference"]
    variant = reference.removeprefix("retrain_")
    for r, s in itertools.product(args.ratios, args.seeds):
        f = work / f"forget-{r}-{s}.json"
        if not f.exists():
            forget_set.run(base, prep, r, s, f)
        if not (work / f"pretrain-{s}.pt").exists():
            pretrain.run(base, prep, s, work / f"pretrain-{s}.pt")
        if not (work / f"{variant}-{r}-{s}.pt").exists():
            retrain.run(base, prep, variant, f, s, work / f"{variant}-{r}-{s}.pt")
        efile = work / f"{variant}-{r}-{s}.eval.json"  # the evaluate stage's result file
        if not efile.exists():
            metrics_of(base, prep, work / f"{variant}-{r}-{s}.pt", f, reference, efile)
        refs[r, s] = json.loads(efile.read_text())["metrics"]
    shown = "GA" if "GA" in next(iter(refs.values())) else "UA"  # GA where the dataset has groups
    print(f"reference {reference} {shown}: " + ", ".join(f"r={r} s={s}: {m[shown]:.1f}" for (r, s), m in refs.items()))

    grid = parse_grid(args.grid)
    reweights = {"true": [True], "false": [False], "both": [False, True]}[args.reweight]
    lines = []
    for method, rw, combo in itertools.product(args.methods, reweights, itertools.product(*[v for _, v in grid])):
        p = copy.deepcopy(base)
        p["method"], p["reweight"] = method, rw
        for (key, _), value in zip(grid, combo):
            set_key(p, key, value)
        gaps, per_ratio, ga, ta, tows = [], {}, [], [], []
        for r, s in itertools.product(args.ratios, args.seeds):
            out = work / "unlearned.pt"
            unlearn.run(p, prep, work / f"pretrain-{s}.pt", work / f"forget-{r}-{s}.json", s, out)
            m = metrics_of(p, prep, out, work / f"forget-{r}-{s}.json", "unlearned", work / "unlearned.json")
            gap = avg_gap(m, refs[r, s], [k for k in METRIC_KEYS if k in m])
            gaps.append(gap)
            tows.append(tow(m, refs[r, s]))
            per_ratio.setdefault(r, []).append(gap)
            ga.append(m[shown])
            ta.append(m["TA"])
        setting = " ".join(f"{k}={v}" for (k, _), v in zip(grid, combo))
        line = (
            f"{method:10s} rw={str(rw):5s} {setting:50s} gap {np.mean(gaps):6.2f} | "
            + " ".join(f"r{r}:{np.mean(v):6.2f}" for r, v in per_ratio.items())
            + f" | ToW {np.mean(tows):6.2f} | {shown} {np.mean(ga):5.1f} TA {np.mean(ta):5.1f}"
        )
        print(line, flush=True)
        lines.append(line)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
