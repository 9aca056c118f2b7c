#!/usr/bin/env bash
# The forgetting audit of docs/audit.md ("Measured"): every method (± REWEIGHT for the paper's five,
# except on random forget sets) on the embedded default, audited at ratio 0.5 (audit.models N = 16
# per side, the first seed's forget set). Only the audit's stages and what they need run
# (`dvc exp run audit@0.5`: the first seed's PRETRAIN and forget set, then audit_train once, the
# 16 originals and 16 RETRAIN+REWEIGHT references shared by every method; per method its 16
# unlearnings and the numbers), so the experiments carry no new paper metrics (those are in
# docs/results.md) and the table is built from the audits alone (grmu.report.audit). From the
# repository root with the venv active:
#     bash tools/audit_comparison.sh            (about 25 minutes on 2 CPU cores)
# DATASET=mnist FORGET=random REFERENCE=retrain_erm bash tools/audit_comparison.sh: 10 classes, a random
# forget set of 300 examples (ratio 0.1; every class is a group), plain RETRAIN as the reference.
# DATASET=mnist FORGET=memorization REFERENCE=retrain_erm bash tools/audit_comparison.sh: 300 examples by
# held-out memorization scores, a third each of high, mid and low (forget.level mix, where RUM joins
# the methods; LEVEL= to change).
# AUDIT_SEED=2000 audits with other models (audit.seed; tag suffix -s2000), METHODS="finetune salun" a subset:
# repeats over audit seeds put a number on the noise of F (docs/audit.md, "How noisy is F").
# Experiments are named audit-{dataset}[-{forget kind}][-s{seed}]-{method}; the report goes to reports/ by that tag.
set -euo pipefail
dataset=${DATASET:-colored_mnist}
kind=${FORGET:-group}
common=(-S dataset="$dataset" -S forget.kind="$kind" -S eval.reference="${REFERENCE:-retrain_reweight}")
if [ "$kind" = group ]; then ratio=0.5; tag=$dataset; else ratio=0.1; tag=$dataset-$kind; fi
if [ -n "${AUDIT_SEED:-}" ]; then common+=(-S audit.seed="$AUDIT_SEED"); tag=$tag-s$AUDIT_SEED; fi
[ "$kind" = memorization ] && common+=(-S forget.level="${LEVEL:-mix}")
common+=(-S "ratios=[$ratio]" -S "audit.ratios=[$ratio]")
all=(finetune l1_sparse salun scrub miu neggrad neggrad_plus random_label influence sharp_minmax)
[ "$kind" = memorization ] && [ "${LEVEL:-mix}" = mix ] && all+=(rum)  # RUM: a method per memorization level
read -r -a methods <<< "${METHODS:-${all[*]}}"
paper=()  # the paper's five, of those chosen, also with REWEIGHT
for m in finetune l1_sparse salun scrub miu; do [[ " ${methods[*]} " == *" $m "* ]] && paper+=("$m"); done
names=()
run() {  # name, extra -S args
  local name=$1; shift
  names+=("$name")
  dvc exp remove -q "$name" 2>/dev/null || true  # a rerun replaces its experiment
  git checkout -q -- params.yaml  # the committed params and these settings, not the last experiment's
  dvc exp run -q "audit@$ratio" "${common[@]}" "$@" -n "$name"
}
for m in "${methods[@]}"; do run "audit-$tag-$m" -S method="$m" -S reweight=false; done
# REWEIGHT where it changes something: a group forget set, or a memorization one (its classes lose
# unequal shares: 9 to 80 of 300 on mnist); a random one takes about 10% of every class, so REWEIGHT's
# weights n_train/n_remaining are all about 1.11 and it is plain training
for m in "${paper[@]+"${paper[@]}"}"; do
  [ "$kind" != random ] && run "audit-$tag-$m-rw" -S method="$m" -S reweight=true
done
python - "$tag" "${names[@]}" <<'PY'
import sys
from pathlib import Path

from grmu.report.audit import load_audits, write_audit_report
from grmu.report.compare import load_experiments, named

tag, names = sys.argv[1], sys.argv[2:]
audits = load_audits(".", named(load_experiments(".", 1), names))
print(write_audit_report(audits, Path(f"reports/audit-{tag}")))
PY
