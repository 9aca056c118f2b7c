"""Stages `pretrain@{seed}` (all of train) and `retrain@{variant}-{ratio}-{seed}` (remaining set
only, variant erm | reweight | gdro): train from scratch, keep the best-validation epoch."""
import argparse

from grmu.config import load_params
from grmu.pipeline import train_reference
from grmu.runtime import stage_main


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--variant", help="omit for PRETRAIN; erm, reweight or gdro for RETRAIN")
    ap.add_argument("--forget", help="forget-set file (RETRAIN only)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--live", help="dvclive directory for training curves")
    args = ap.parse_args()
    train_reference(load_params(args.params), args.prepared, args.seed, args.out, args.live,
                    variant=args.variant, forget_path=args.forget)


if __name__ == "__main__":
    stage_main(main)
