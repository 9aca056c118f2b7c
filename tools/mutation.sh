#!/usr/bin/env bash
# Mutation score of the FAST test suite (pytest -m "not slow") over the metric formulas, the
# forget-set construction, the robust-training pieces, the avg.-gap report and the stage wiring.
#
#   tools/mutation.sh                 # every module below (slow: an hour or more on 2 cores)
#   tools/mutation.sh "grmu.splits*"  # only the mutants matching mutmut name globs
#   MUTMUT_CHILDREN=4 tools/mutation.sh
#
# The tool is mutmut 3 (configured in pyproject.toml's [tool.mutmut]): it copies src/ into
# mutants/ (git-ignored), puts mutants/src ahead of the editable install on sys.path, and runs
# for each mutant only the tests that executed the mutated function. Results are cached in
# mutants/: a re-run only re-tests mutants of functions that changed; `rm -rf mutants` to start
# afresh. Inspect a mutant with `mutmut show NAME`; list survivors with their diffs:
# tools/mutation_report.py; check a test file against given mutants without touching src/:
# tools/mutation_check.py FILE NAME... . On a shared machine run it as `nice -n 19 tools/mutation.sh`.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MUTMUT_VERSION=3.8.1
MODULES=(grmu/metrics.py grmu/splits.py grmu/robust.py grmu/report/gaps.py
         grmu/stages/evaluate.py grmu/stages/retrain.py grmu/stages/unlearn.py)

if ! "$PY" -c "import mutmut, sys; sys.exit(mutmut.__version__ != '$MUTMUT_VERSION')" 2>/dev/null; then
    "$PY" -m pip install -q "mutmut==$MUTMUT_VERSION"
fi
MUTMUT="$(dirname "$PY")/mutmut"

# one thread per test process: CPU time ~ wall time, so the per-mutant CPU limit means what it says
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
start=$(date +%s)
# mutmut exits non-zero when mutants survive; the summary below is the result.
"$MUTMUT" run --max-children "${MUTMUT_CHILDREN:-1}" "$@" || true
echo "wall time: $(( $(date +%s) - start ))s"

"$PY" - "${MODULES[@]}" <<'EOF'
"""Per-module and total counts from mutmut's result files (mutants/src/<module>.meta)."""
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

total = Counter()
cols = ("killed", "timeout", "survived", "no tests", "not checked")


def row(name, c):
    # a timeout counts as killed (the mutant broke the run); a mutant no test executes counts as
    # surviving; mutants not checked yet (a partial run) are left out of the score
    done = c["total"] - c["not checked"]
    score = f"{100 * (c['killed'] + c['timeout']) / done:.1f}%" if done else "-"
    print(f"{name:26}" + "".join(f"{c[k]:>12}" for k in cols) + f"{c['total']:>7}{score:>8}")


print(f"{'module':26}" + "".join(f"{k:>12}" for k in cols) + f"{'total':>7}{'score':>8}")
for mod in sys.argv[1:]:
    meta = Path("mutants/src") / f"{mod}.meta"
    codes = list(json.loads(meta.read_text())["exit_code_by_key"].values()) if meta.exists() else []
    c = Counter(status_by_exit_code[v] for v in codes)
    c["total"] = len(codes)
    other = set(c) - set(cols) - {"total"}
    if other:
        print(f"  {mod}: also {dict((k, c[k]) for k in other)} (counted as survived)")
        c["survived"] += sum(c[k] for k in other)
    total.update(c)
    row(mod, c)
row("TOTAL", total)
print("score = (killed + timeout) / checked mutants (survivors and mutants no test runs count against it)")
EOF
