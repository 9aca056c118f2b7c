"""Stage `aggregate`: deltas and avg. gap against RETRAIN+REWEIGHT, tables and plot data."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, read_json, stage_main
from grmu.stages import aggregate


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--evals", default="metrics/eval")
    ap.add_argument("--logs", default="logs")
    ap.add_argument("--metrics", default="metrics")
    ap.add_argument("--plots", default="plots")
    args = ap.parse_args()
    meta = read_json(f"{args.prepared}/meta.json", "prepared dataset")
    aggregate.run(load_params(args.params), args.evals, args.logs, meta, args.metrics, args.plots)
    print(open(f"{args.metrics}/table.md").read())


if __name__ == "__main__":
    stage_main(main)
