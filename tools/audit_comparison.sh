#!/usr/bin/env bash
# The forgetting audit of docs/audit.md ("Measured"): every method (± REWEIGHT for the paper's five) on
# the embedded default, audited at ratio 0.5 (audit.models N = 16 per side, the first seed's forget
# set), each a whole experiment (the paper's metrics over 3 seeds too, to compare the rankings), then
# `grmu report`. audit_train (the 16 originals and 16 RETRAIN+REWEIGHT references) runs once and is
# shared by every method; per method its 16 unlearnings and the numbers. From the repository root
# with the venv active:
#     bash tools/audit_comparison.sh            (about 35 minutes on 2 CPU cores)
# DATASET=mnist FORGET=random REFERENCE=retrain_erm bash tools/audit_comparison.sh: 10 classes, random
# forget sets (every class is a group), plain RETRAIN as the reference.
set -euo pipefail
dataset=${DATASET:-colored_mnist}
common=(-S dataset="$dataset" -S forget.kind="${FORGET:-group}" -S eval.reference="${REFERENCE:-retrain_reweight}")
if [ "${FORGET:-group}" = random ]; then common+=(-S "ratios=[0.1]" -S "audit.ratios=[0.1]")
else common+=(-S "ratios=[0.1,0.5,0.9]" -S "audit.ratios=[0.5]"); fi
methods=(finetune l1_sparse salun scrub miu neggrad neggrad_plus random_label influence sharp_minmax)
paper=(finetune l1_sparse salun scrub miu)
run() {  # name, extra -S args
  local name=$1; shift
  dvc exp remove -q "$name" 2>/dev/null || true  # a rerun replaces its experiment
  dvc exp run -q "${common[@]}" "$@" -n "$name"
}
for m in "${methods[@]}"; do run "audit-$dataset-$m" -S method="$m" -S reweight=false; done
for m in "${paper[@]}"; do
  [ "${FORGET:-group}" = group ] && run "audit-$dataset-$m-rw" -S method="$m" -S reweight=true
done
grmu report --dataset "$dataset" --exp "audit-$dataset-*" --out "reports/audit-$dataset"
