"""Stage `forget_set@{seed}`: draw and persist the forget set of every ratio ({ratio}.json in --out)."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import forget_set


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True, help="folder of the forget sets, one file per ratio")
    ap.add_argument("--memorization", help="the seed's memorization scores (forget.kind memorization)")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out):
        forget_set.run_seed(params, args.prepared, args.seed, args.out, args.memorization)


if __name__ == "__main__":
    stage_main(main)
