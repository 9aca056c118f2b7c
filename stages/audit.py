"""Stage `audit@{ratio}`: per-example ε, forgetting quality, U-LiRA and population attacks, per
group, from the models of `audit_train@{ratio}` and `audit_unlearn@{ratio}` (docs/audit.md)."""

from grmu.config import load_params
from grmu.runtime import ArgumentParser, removed_on_failure, stage_main
from grmu.stages import audit


def main():
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--forget", required=True, help="the forget set (data/forget/{seed}/{ratio}.json)")
    ap.add_argument("--trained", required=True, help="folder of audit_train's models")
    ap.add_argument("--unlearned", required=True, help="audit_unlearn's outputs (.npz)")
    ap.add_argument("--out", required=True, help="the numbers (.json)")
    ap.add_argument("--examples", required=True, help="one row per forget example (.csv)")
    ap.add_argument("--plot", required=True, help="the per-example ε distribution (.png)")
    args = ap.parse_args()
    params = load_params(args.params)
    with removed_on_failure(args.out, args.examples, args.plot):
        audit.run(params, args.prepared, args.forget, args.trained, args.unlearned, args.out, args.examples, args.plot)


if __name__ == "__main__":
    stage_main(main)
