"""Wall time of each unlearning method against RETRAIN on the same data.

Uses params.yaml as it is (dataset, model, train and unlearn settings), one ratio and seed;
times the whole in-process call (training loop, and for the methods their extra passes such
as SalUn's mask or MIU's estimator tuning), not process start-up. Prints seconds, the ratio
to RETRAIN, the cost of one unlearning epoch relative to one RETRAIN epoch (the fair comparison
when the epoch counts differ; ``influence`` is one-shot: its whole cost), MIU's cost relative
to SCRUB, and what SAM costs: RETRAIN with ``train.sam.mode: min`` and FINETUNE with
``unlearn.sam.mode: min`` against their plain runs (two forward/backward passes per step).

    .venv/bin/python bench/method_cost.py [--ratio 0.5] [--seed 0] [--repeat 3] [--set key=value ...]
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

from grmu import GrmuError
from grmu.methods import list_methods
from grmu.stages import forget_set, prepare, pretrain, retrain, unlearn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from tune_recipe import params_with  # noqa: E402  (the same key=value parsing)


def timed(fn, repeat):
    """Median wall time of ``fn()`` over ``repeat`` calls, and its last return value."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="overrides key=value (e.g. dataset=mnist forget.kind=random)")
    args = ap.parse_args()
    params = params_with(args.params, args.set)
    tmp = Path(tempfile.mkdtemp())
    prepare.run(params, tmp / "prep")
    forget_set.run(params, tmp / "prep", args.ratio, args.seed, tmp / "f.json")
    pretrain.run(params, tmp / "prep", args.seed, tmp / "pre.pt")
    retrain_sec, _ = timed(
        lambda: retrain.run(params, tmp / "prep", "erm", tmp / "f.json", args.seed, tmp / "re.pt"), args.repeat
    )
    train_epochs = params["train"]["epochs"]
    rows = [("RETRAIN", retrain_sec, train_epochs, f"epochs {train_epochs}, batch {params['train']['batch_size']}")]

    def run_method(name, **unlearn_over):
        p = copy.deepcopy(params)
        p["method"] = name
        p["unlearn"]["sam"].update(unlearn_over)
        return timed(
            lambda: unlearn.run(p, tmp / "prep", tmp / "pre.pt", tmp / "f.json", args.seed, tmp / "u.pt"), args.repeat
        )

    skipped = []
    for spec in list_methods():
        try:
            sec, info = run_method(spec.name)
        except GrmuError as e:  # e.g. rum needs a memorization mix forget set: --set forget.kind=memorization ...
            skipped.append(f"{spec.name}: {e}")
            continue
        epochs = 1 if spec.name == "influence" else info["unlearn"]["epochs"]
        rows.append(
            (spec.name, sec, epochs, f"epochs {info['unlearn']['epochs']}, batch {info['unlearn']['batch_size']}")
        )
    sam_params = copy.deepcopy(params)
    sam_params["train"]["sam"]["mode"] = "min"
    sam_retrain, _ = timed(
        lambda: retrain.run(sam_params, tmp / "prep", "erm", tmp / "f.json", args.seed, tmp / "re.pt"), args.repeat
    )
    sam_ft, info = run_method("finetune", mode="min")
    rows.append(("RETRAIN+SAM", sam_retrain, train_epochs, "train.sam.mode=min"))
    rows.append(("finetune+SAM", sam_ft, info["unlearn"]["epochs"], "unlearn.sam.mode=min"))
    print(
        f"\n{params['dataset']}, ratio {args.ratio}, seed {args.seed}, median of {args.repeat}, "
        f"reweight={params['reweight']}, recipe={params['recipe']}"
    )
    print(f"{'run':13s} {'seconds':>8s} {'x RETRAIN':>10s} {'epoch x RETRAIN epoch':>22s}  settings")
    per_epoch = retrain_sec / train_epochs
    for name, sec, epochs, settings in rows:
        print(f"{name:13s} {sec:8.2f} {sec / retrain_sec:10.2f} {sec / epochs / per_epoch:22.2f}  {settings}")
    cost = {name: sec for name, sec, _, _ in rows}
    for line in skipped:
        print(f"not run here: {line}")
    print(f"MIU / SCRUB: {cost['miu'] / cost['scrub']:.2f}")
    print(
        f"SAM step cost: RETRAIN+SAM / RETRAIN {sam_retrain / retrain_sec:.2f}, "
        f"finetune+SAM / finetune {sam_ft / cost['finetune']:.2f}"
    )


if __name__ == "__main__":
    main()
