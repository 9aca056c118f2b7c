#!/usr/bin/env bash
# The comparison of docs/results.md, on the embedded 10-class default (mnist, random forget sets of 10% of
# train, reference = plain RETRAIN): every method after plain and after SAM pretraining, 3 seeds,
# one DVC experiment each, then one report. Run from the repository root with the venv active:
#     bash tools/sharp_comparison.sh            (about half an hour on 2 CPU cores)
set -euo pipefail
common=(-S dataset=mnist -S forget.kind=random -S "ratios=[0.1]" -S eval.reference=retrain_erm)
methods=(finetune l1_sparse salun scrub neggrad neggrad_plus random_label influence sharp_minmax)
for pre in none min; do
  for m in "${methods[@]}"; do
    dvc exp remove -q "sharp-$pre-$m" 2>/dev/null || true  # a rerun replaces its experiment
    dvc exp run -q "${common[@]}" -S train.sam.mode="$pre" -S method="$m" -n "sharp-$pre-$m"
  done
done
grmu report --dataset mnist --out reports/sharp
