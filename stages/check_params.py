"""Stage `check_params`: validate the whole params.yaml (names, keys, values) before anything runs."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import check_params


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/params.ok")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out):  # and refused when params.yaml changes meanwhile (grmu.runtime)
        check_params.run(params, args.out)


if __name__ == "__main__":
    stage_main(main)
