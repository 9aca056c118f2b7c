"""Stage `unlearn@{ratio}-{seed}`: apply `method` (with `reweight`) to PRETRAIN."""
from grmu.warm import hand_over

if __name__ == "__main__":
    hand_over()  # runs this script in a warm fork that has imported torch already (grmu.warm)

from grmu.config import load_params
from grmu.runtime import ArgumentParser, stage_main
from grmu.stages import unlearn


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--pretrained", required=True)
    ap.add_argument("--forget", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--live")
    args = ap.parse_args()
    unlearn.run(load_params(args.params), args.prepared, args.pretrained, args.forget, args.seed, args.out, args.live)


if __name__ == "__main__":
    stage_main(main)
