"""Stage `prepare`: build the dataset named by `dataset` into data/prepared/."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, stage_main
from grmu.stages import prepare


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/prepared")
    args = ap.parse_args()
    prepare.run(load_params(args.params), args.out)


if __name__ == "__main__":
    stage_main(main)
