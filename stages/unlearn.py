"""Stage `unlearn@{seed}`: for every ratio, apply `method` (with `reweight`) to PRETRAIN."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import unlearn


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--pretrained", required=True)
    ap.add_argument("--forget", required=True, help="the seed's folder of forget sets")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True, help="folder of the checkpoints (and outputs), one per ratio")
    ap.add_argument("--live", help="dvclive folder for unlearning curves (one per ratio inside)")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out, args.live):
        unlearn.run_seed(params, args.prepared, args.pretrained, args.forget, args.seed, args.out, args.live)


if __name__ == "__main__":
    stage_main(main)
