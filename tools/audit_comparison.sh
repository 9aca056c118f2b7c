#!/usr/bin/env bash
# The forgetting audit of docs/audit.md ("Measured"): every method (± REWEIGHT for the paper's five) on
# the embedded default, audited at ratio 0.5 (audit.models N = 16 per side, the first seed's forget
# set). Only the audit's stages and what they need run (`dvc exp run audit@0.5`: the first seed's
# PRETRAIN and forget set, then audit_train once, the 16 originals and 16 RETRAIN+REWEIGHT
# references shared by every method; per method its 16 unlearnings and the numbers), so the
# experiments carry no new paper metrics (those are in docs/results.md) and the table is built from
# the audits alone (grmu.report.audit). From the repository root with the venv active:
#     bash tools/audit_comparison.sh            (about 25 minutes on 2 CPU cores)
# DATASET=mnist FORGET=random REFERENCE=retrain_erm bash tools/audit_comparison.sh: 10 classes, random
# forget sets (every class is a group), plain RETRAIN as the reference.
set -euo pipefail
dataset=${DATASET:-colored_mnist}
common=(-S dataset="$dataset" -S forget.kind="${FORGET:-group}" -S eval.reference="${REFERENCE:-retrain_reweight}")
if [ "${FORGET:-group}" = random ]; then ratio=0.1; else ratio=0.5; fi
common+=(-S "ratios=[$ratio]" -S "audit.ratios=[$ratio]")
methods=(finetune l1_sparse salun scrub miu neggrad neggrad_plus random_label influence sharp_minmax)
paper=(finetune l1_sparse salun scrub miu)
run() {  # name, extra -S args
  local name=$1; shift
  dvc exp remove -q "$name" 2>/dev/null || true  # a rerun replaces its experiment
  dvc exp run -q "audit@$ratio" "${common[@]}" "$@" -n "$name"
}
for m in "${methods[@]}"; do run "audit-$dataset-$m" -S method="$m" -S reweight=false; done
for m in "${paper[@]}"; do
  [ "${FORGET:-group}" = group ] && run "audit-$dataset-$m-rw" -S method="$m" -S reweight=true
done
python - "$dataset" <<'PY'
import sys
from pathlib import Path

from grmu.report.audit import audit_table, load_audits, plot_audits
from grmu.report.compare import load_experiments, named
from grmu.report.tables import to_markdown

dataset = sys.argv[1]
exps = named(load_experiments(".", 1), [f"audit-{dataset}-*"])
audits = load_audits(".", exps)
out = Path(f"reports/audit-{dataset}")
out.mkdir(parents=True, exist_ok=True)
table = audit_table(audits)
table.to_csv(out / "audit.csv", index=False)
(out / "audit.md").write_text(to_markdown(table.round(3).fillna("")))
plot_audits(audits, out / "audit_eps.png")
print(to_markdown(table.round(3).fillna("")))
PY
