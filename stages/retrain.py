"""Stages `retrain@{variant}-{seed}`: for every ratio, train from scratch on the remaining set only
(variant erm | reweight | gdro), keep the best-validation epoch."""

from grmu.config import load_params
from grmu.distributed import processes
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import retrain


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--variant", required=True, help="erm, reweight or gdro")
    ap.add_argument("--forget", required=True, help="the seed's folder of forget sets")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True, help="folder of the checkpoints (and outputs), one per ratio")
    ap.add_argument("--live", help="dvclive folder for training curves (one per ratio inside)")
    args = ap.parse_args()
    params = load_params(args.params)
    with processes(params["distributed"]), removed_on_failure(args.out, args.live):  # several under torchrun
        retrain.run_seed(params, args.prepared, args.variant, args.forget, args.seed, args.out, args.live)


if __name__ == "__main__":
    stage_main(main)
