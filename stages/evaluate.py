"""Stages `evaluate@{model}`: every metric of one kind of model on every (ratio, seed), from the
outputs its stages saved (no model runs here)."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import evaluate


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--model", required=True, choices=evaluate.MODELS)
    ap.add_argument("--models", default="models", help="folder of the models' checkpoints and outputs")
    ap.add_argument("--forget", default="data/forget", help="folder of the forget sets ({seed}/{ratio}.json)")
    ap.add_argument("--out", required=True, help="folder of the results, {ratio}-{seed}.json")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out):
        evaluate.run_model(params, args.prepared, args.model, args.models, args.forget, args.out)


if __name__ == "__main__":
    stage_main(main)
