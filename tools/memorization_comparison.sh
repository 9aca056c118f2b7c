#!/usr/bin/env bash
# The memorization comparison of docs/results.md, on the embedded 10-class default (mnist): forget sets of
# 300 training samples (10%) chosen by held-out memorization scores (K = 16 models per seed), at
# each level, reference = plain RETRAIN, 3 seeds, one DVC experiment per (level, method), RUM on
# the mix level, then one report. Run from the repository root with the venv active:
#     bash tools/memorization_comparison.sh      (about half an hour on 2 CPU cores)
set -euo pipefail
common=(-S dataset=mnist -S forget.kind=memorization -S forget.count=300 -S "ratios=[0.1]"
        -S eval.reference=retrain_erm)
methods=(finetune neggrad_plus salun)
run() {  # name, then -S overrides
  local name=$1; shift
  dvc exp remove -q "$name" 2>/dev/null || true  # a rerun replaces its experiment
  dvc exp run -q "${common[@]}" "$@" -n "$name"
}
for level in high mid low mix; do
  for m in "${methods[@]}"; do
    run "mem-$level-$m" -S forget.level="$level" -S method="$m"
  done
done
run "mem-mix-rum" -S forget.level=mix -S method=rum
grmu report --dataset mnist --out reports/memorization
python tools/memorization_figure.py --table reports/memorization/methods.csv
