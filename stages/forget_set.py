"""Stage `forget_set@{ratio}-{seed}`: draw and persist the forget set."""
from grmu.warm import hand_over

if __name__ == "__main__":
    hand_over()  # runs this script in a warm fork that has imported torch already (grmu.warm)

from grmu.config import load_params
from grmu.runtime import ArgumentParser, stage_main
from grmu.stages import forget_set


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--ratio", type=float, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--memorization", help="the seed's memorization scores (forget.kind memorization)")
    args = ap.parse_args()
    forget_set.run(load_params(args.params), args.prepared, args.ratio, args.seed, args.out, args.memorization)


if __name__ == "__main__":
    stage_main(main)
