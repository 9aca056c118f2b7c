"""Stages `evaluate@{model}-{ratio}-{seed}`: every metric of one model on one forget split."""
from grmu.warm import hand_over

if __name__ == "__main__":
    hand_over()  # runs this script in a warm fork that has imported torch already (grmu.warm)

from grmu.config import load_params
from grmu.runtime import ArgumentParser, stage_main
from grmu.stages import evaluate


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--model", required=True, help="checkpoint file")
    ap.add_argument("--name", required=True, help="model name in reports")
    ap.add_argument("--forget", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    evaluate.run(load_params(args.params), args.prepared, args.model, args.forget, args.name, args.out)


if __name__ == "__main__":
    stage_main(main)
