"""Cost of the memorization stage's held-out estimator: seconds per model and in total, and
how they grow with the number of models K and with the training-set size.

Uses params.yaml as it is (dataset, model, ``train`` settings, ``memorization.epochs``), with
``--set`` overrides; times the in-process ``heldout`` call of ``grmu.stages.memorization``
(training every model and predicting the train split), not process start-up. The sizes are
the first n samples of the train split; K and the fraction as listed. One proxy run (the cost
of ``confidence`` etc.: one PRETRAIN-like training with per-example records) is timed too.

    .venv/bin/python bench/memorization_cost.py --set dataset=mnist [--models 4 8 16] [--sizes 750 1500 3000]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from grmu.prepared import load_prepared
from grmu.stages import memorization, prepare

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from tune_recipe import params_with  # noqa: E402  (the same key=value parsing)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="training-set sizes (default: all of train)")
    ap.add_argument("--set", nargs="*", default=[], help="overrides key=value (e.g. dataset=mnist)")
    args = ap.parse_args()
    params = params_with(args.params, args.set)
    tmp = Path(tempfile.mkdtemp())
    prepare.run(params, tmp / "prep")
    prep = load_prepared(tmp / "prep")
    train = prep.indices("train")
    sizes = args.sizes or [len(train)]
    cfg = memorization.train_cfg(params)
    print(
        f"dataset {params['dataset']}, model {params['model']['arch']}, {cfg['epochs']} epochs per model, "
        f"batch {cfg['batch_size']}, fraction {params['memorization']['fraction']}"
    )
    print(f"{'K':>4} {'train samples':>14} {'total s':>9} {'s / model':>10} {'s / model / 1k samples':>23}")
    for n in sizes:
        for k in args.models:
            params["memorization"]["models"] = k
            t0 = time.perf_counter()
            memorization.heldout(params, prep, train[:n], args.seed)
            total = time.perf_counter() - t0
            print(f"{k:>4} {n:>14} {total:>9.2f} {total / k:>10.3f} {total / k / n * 1000:>23.3f}")
    t0 = time.perf_counter()
    memorization.proxies(params, prep, train, args.seed, "confidence")
    print(f"proxy run (confidence, {len(train)} samples): {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
