"""Stages `retrain@{variant}-{ratio}-{seed}`: train from scratch on the remaining set only
(variant erm | reweight | gdro), keep the best-validation epoch."""
from grmu.warm import hand_over

if __name__ == "__main__":
    hand_over()  # runs this script in a warm fork that has imported torch already (grmu.warm)

from grmu.config import load_params
from grmu.distributed import processes
from grmu.runtime import ArgumentParser, stage_main
from grmu.stages import retrain


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--variant", required=True, help="erm, reweight or gdro")
    ap.add_argument("--forget", required=True, help="forget-set file")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--live", help="dvclive directory for training curves")
    args = ap.parse_args()
    params = load_params(args.params)
    with processes(params["distributed"]):  # several under torchrun (grmu.distributed)
        retrain.run(params, args.prepared, args.variant, args.forget, args.seed, args.out, args.live)


if __name__ == "__main__":
    stage_main(main)
