"""Stage `pretrain@{seed}`: train from scratch on all of train, keep the best-validation epoch; its
outputs on every sample are saved beside the checkpoint (.npz)."""

from grmu.config import load_params
from grmu.distributed import processes
from grmu.outputs import outputs_path
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import pretrain


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--live", help="dvclive directory for training curves")
    args = ap.parse_args()
    params = load_params(args.params)
    # several under torchrun; on a failure (params.yaml changed meanwhile included) nothing is kept
    with processes(params["distributed"]), removed_on_failure(args.out, outputs_path(args.out), args.live):
        pretrain.run(params, args.prepared, args.seed, args.out, args.live)


if __name__ == "__main__":
    stage_main(main)
