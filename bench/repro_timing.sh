#!/usr/bin/env bash
# Times, in a fresh clone of the committed HEAD (so nothing cached here helps):
#   1. a cold `dvc repro` of the default params (seconds per kind of stage: bench/stage_times.py),
#   2. a no-op `dvc repro` right after it,
#   3. a method switch, `dvc exp run -S method=scrub` (reruns unlearn, its evaluation, aggregate),
# and prints the number of stages and the size of dvc.lock, then the compute inside the stages
# (the models' training and unlearning seconds they log, and every evaluation in one process).
# Usage: bash bench/repro_timing.sh   (from the repo root, with .venv set up; run it alone)
#        KEEP=DIR bash bench/repro_timing.sh   also copies the cold run's dvc.lock, data/, models/,
#        metrics/ and plots/ to DIR (to commit them, or to compare with tools/compare_outputs.py)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/repo"
cd "$work/repo"
export PATH="$root/.venv/bin:$PATH" PYTHONPATH="$work/repo/src" DVC_NO_ANALYTICS=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost
echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(python -c 'import torch; print("torch", torch.__version__)')"
t0=$(date +%s.%N)
dvc repro 2>&1 | python "$root/bench/stage_times.py" > repro.log || { tail -30 repro.log; exit 1; }
grep -q "^total" repro.log && [ -f metrics/summary.json ] || { tail -30 repro.log; exit 1; }
t1=$(date +%s.%N)
stages=$(python -c "import yaml; print(len(yaml.safe_load(open('dvc.lock'))['stages']))")
lock_kb=$(python -c "import os; print(round(os.path.getsize('dvc.lock') / 1024, 1))")
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp -r dvc.lock data models metrics plots "$KEEP"/; fi
# the compute no layout of stages can remove: the models' own training and unlearning time (each
# stage logs it), and every evaluation of the run in one process, after its imports
python - > /dev/null <<'PY'
import json, pathlib, time
from grmu.config import load_params
from grmu.stages import evaluate
secs = {"train_seconds": 0.0, "unlearn_seconds": 0.0}
for f in pathlib.Path("logs").rglob("metrics.json"):
    d = json.loads(f.read_text())
    for k in secs:
        secs[k] += d.get(k, 0.0)
params, t = load_params("params.yaml"), time.perf_counter()
n = sum(len(evaluate.run_model(params, "data/prepared", m, "models", "data/forget", f"../eval_floor/{m}")) for m in evaluate.MODELS)
ev = time.perf_counter() - t
floor = (f"inside the stages: training {secs['train_seconds']:.1f} s, unlearning {secs['unlearn_seconds']:.1f} s; "
      f"{n} evaluations in one process {ev:.1f} s; sum {sum(secs.values()) + ev:.1f} s")
pathlib.Path("floor.txt").write_text(floor + "\n")
PY
t1b=$(date +%s.%N)  # (counting the lock, the copy and the floor are not timed)
dvc repro -q > /dev/null 2>&1; t2=$(date +%s.%N)
git add -A >/dev/null 2>&1; git commit -qm "cold repro" >/dev/null 2>&1 || true
dvc exp run -q -S method=scrub > exp.log 2>&1 || { tail -20 exp.log; exit 1; }; t3=$(date +%s.%N)
sed -n '/^stage  /,$p' repro.log
python - "$t0" "$t1" "$t1b" "$t2" "$t3" "$stages" "$lock_kb" <<'PY'
import sys
t0, t1, t1b, t2, t3, n, kb = map(float, sys.argv[1:])
print(f"cold dvc repro: {t1 - t0:.1f} s for {int(n)} stages (dvc.lock {kb:g} KB)")
print(f"no-op dvc repro: {t2 - t1b:.1f} s")
print(f"method switch (dvc exp run -S method=scrub): {t3 - t2:.1f} s")
PY
cat floor.txt
cat metrics/table.md
