#!/usr/bin/env bash
# The "group forget sets and memorization" comparison of docs/results.md, on the embedded default (colored_mnist):
# held-out memorization scores of the train split (K = 16 models per seed) and, for each method,
# the group forget set at ratio 0.5 (112 samples of the minority group digit>=5 on red) next to a
# random and two memorization forget sets (high, low) of the same 112 samples; reference = plain
# RETRAIN for all (the group-robust references would favour the group forget set), 3 seeds, one
# DVC experiment per (forget set, method), then one report and the per-group table and figure.
# Run from the repository root with the venv active:
#     bash tools/groups_vs_memorization.sh      (about 40 minutes on 2 CPU cores)
set -euo pipefail
common=(-S dataset=colored_mnist -S "ratios=[0.5]" -S eval.reference=retrain_erm -S memorization.score=heldout)
methods=(finetune salun scrub)
n=112  # int(0.5 * 224): the group forget set's size (224 training samples of the forget group)
run() {  # name, then -S overrides
  local name=$1; shift
  dvc exp remove -q "$name" 2>/dev/null || true  # a rerun replaces its experiment
  dvc exp run -q "${common[@]}" "$@" -n "$name"
}
for m in "${methods[@]}"; do
  run "gm-group-$m" -S forget.kind=group -S forget.count=null -S method="$m"
  run "gm-random-$m" -S forget.kind=random -S forget.count=$n -S method="$m"
  for level in high low; do
    run "gm-$level-$m" -S forget.kind=memorization -S forget.level="$level" -S forget.count=$n -S method="$m"
  done
done
grmu report --dataset colored_mnist --exp 'gm-*' --out reports/groups_memorization
# the last experiment left the held-out scores of every seed in data/memorization/; a group forget set is
# needed for its size and groups
dvc exp run -q "${common[@]}" -S forget.kind=group -S forget.count=null -S method=finetune -n gm-group-finetune-scores
python tools/groups_memorization.py --out reports/groups_memorization
dvc exp remove -q gm-group-finetune-scores
