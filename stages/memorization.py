"""Stage `memorization@{seed}`: memorization scores of the train split and their histogram."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import memorization


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hist", required=True, help="CSV histogram of the scores (dvc plots)")
    ap.add_argument("--original", help="the PRETRAIN checkpoint of the seed (memorization.score ho_ret)")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out, args.hist):  # and refused when params.yaml changes meanwhile (grmu.runtime)
        memorization.run(params, args.prepared, args.seed, args.out, args.hist, args.original)


if __name__ == "__main__":
    stage_main(main)
