"""Stage `audit_unlearn@{ratio}`: each of the audit's N originals unlearned by the method
(docs/audit.md)."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import audit_unlearn


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--forget", required=True, help="the forget set (data/forget/{seed}/{ratio}.json)")
    ap.add_argument("--trained", required=True, help="audit_train's folder")
    ap.add_argument("--out", required=True, help="the unlearned models' outputs (.npz)")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out):
        audit_unlearn.run(params, args.prepared, args.forget, args.trained, args.out)


if __name__ == "__main__":
    stage_main(main)
