"""Stage `check_params`: validate the whole params.yaml (names, keys, values) before anything runs."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, stage_main
from grmu.stages import check_params


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/params.ok")
    args = ap.parse_args()
    check_params.run(load_params(args.params), args.out)


if __name__ == "__main__":
    stage_main(main)
