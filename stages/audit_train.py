"""Stage `audit_train@{ratio}`: the forgetting audit's N originals (as PRETRAIN) and N RETRAIN
references, from independent seeds (docs/audit.md)."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import audit_train


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--forget", required=True, help="the forget set (data/forget/{seed}/{ratio}.json)")
    ap.add_argument("--out", required=True, help="folder of the originals' checkpoints and the populations' outputs")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out):
        audit_train.run(params, args.prepared, args.forget, args.out)


if __name__ == "__main__":
    stage_main(main)
