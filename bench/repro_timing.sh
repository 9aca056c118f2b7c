#!/usr/bin/env bash
# Times a cold `dvc repro` of the default params and a no-op `dvc repro` right after it, in a
# fresh clone of the committed HEAD (so nothing cached here helps). Prints seconds.
# Usage: bash bench/repro_timing.sh   (from the repo root, with .venv set up)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/repo"
cd "$work/repo"
export PATH="$root/.venv/bin:$PATH" PYTHONPATH="$work/repo/src" DVC_NO_ANALYTICS=1
echo "machine: $(nproc) cores, $(python -c 'import torch; print("torch", torch.__version__)')"
t0=$(date +%s.%N); dvc repro -q > repro.log 2>&1 || { tail -20 repro.log; exit 1; }; t1=$(date +%s.%N)
stages=$(python -c "import yaml; print(len(yaml.safe_load(open('dvc.lock'))['stages']))")
dvc repro -q > /dev/null 2>&1; t2=$(date +%s.%N)
python - "$t0" "$t1" "$t2" "$stages" <<'PY'
import sys
t0, t1, t2, n = map(float, sys.argv[1:])
print(f"cold dvc repro: {t1 - t0:.1f} s for {int(n)} stages")
print(f"no-op dvc repro: {t2 - t1:.1f} s")
PY
cat metrics/table.md
