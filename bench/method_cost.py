"""Wall time of each unlearning method against RETRAIN on the same data.

Uses params.yaml as it is (dataset, model, train and unlearn settings), one ratio and seed;
times the whole in-process call (training loop, and for the methods their extra passes such
as SalUn's mask or MIU's estimator tuning), not process start-up. Prints seconds, the ratio
to RETRAIN and MIU's cost relative to SCRUB.

    .venv/bin/python bench/method_cost.py [--ratio 0.5] [--seed 0] [--repeat 3]
"""
import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

from grmu.config import load_params
from grmu.methods import list_methods
from grmu.stages import forget_set, prepare, pretrain, retrain, unlearn

ROOT = Path(__file__).resolve().parents[1]


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
    args = ap.parse_args()
    params = load_params(args.params)
    tmp = Path(tempfile.mkdtemp())
    prepare.run(params, tmp / "prep")
    forget_set.run(params, tmp / "prep", args.ratio, args.seed, tmp / "f.json")
    pretrain.run(params, tmp / "prep", args.seed, tmp / "pre.pt")
    retrain_sec, _ = timed(lambda: retrain.run(params, tmp / "prep", "erm", tmp / "f.json", args.seed, tmp / "re.pt"),
                           args.repeat)
    rows = [("RETRAIN", retrain_sec, f"epochs {params['train']['epochs']}, batch {params['train']['batch_size']}")]
    for spec in list_methods():
        p = copy.deepcopy(params)
        p["method"] = spec.name
        sec, info = timed(lambda: unlearn.run(p, tmp / "prep", tmp / "pre.pt", tmp / "f.json", args.seed, tmp / "u.pt"),
                          args.repeat)
        rows.append((spec.name, sec, f"epochs {info['unlearn']['epochs']}, batch {info['unlearn']['batch_size']}"))
    print(f"\n{params['dataset']}, ratio {args.ratio}, seed {args.seed}, median of {args.repeat}, "
          f"reweight={params['reweight']}, recipe={params['recipe']}")
    print(f"{'run':12s} {'seconds':>8s} {'x RETRAIN':>10s}  settings")
    for name, sec, settings in rows:
        print(f"{name:12s} {sec:8.2f} {sec / retrain_sec:10.2f}  {settings}")
    cost = {name: sec for name, sec, _ in rows}
    print(f"MIU / SCRUB: {cost['miu'] / cost['scrub']:.2f}")


if __name__ == "__main__":
    main()
