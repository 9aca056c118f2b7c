"""Stage `prepare`: build the dataset named by `dataset` into data/prepared/."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import prepare


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/prepared")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out):  # and refused when params.yaml changes meanwhile (grmu.runtime)
        prepare.run(params, args.out)


if __name__ == "__main__":
    stage_main(main)
