"""Run one test file against given mutants, in a private copy of mutants/ (never touches src/):

    .venv/bin/python tools/mutation_check.py tests/test_mutation_gaps.py grmu.splits.x_foo__mutmut_3 ...

Extra pytest arguments (e.g. -k NAME) come from $CHECK_ARGS. Prints, per mutant, "killed" (the
file fails on it) or "SURVIVED"; and checks first that the file passes with no mutant active.
Needs a mutants/ tree from tools/mutation.sh.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parents[1]
test_file, names = sys.argv[1], sys.argv[2:]
work = Path(tempfile.mkdtemp(prefix="mutcheck-"))
shutil.copytree(root / "mutants", work, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.meta", "*.spans"))
shutil.copytree(root / "tests", work / "tests", dirs_exist_ok=True)
driver = f"""
import os, sys
sys.path.insert(0, {str(work / "src")!r})
import pytest
import grmu
assert grmu.__file__.startswith({str(work)!r}), grmu.__file__
names = {names!r}
args = ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", {test_file!r}]
args += os.environ.get("CHECK_ARGS", "").split()
os.environ["MUTANT_UNDER_TEST"] = ""
assert pytest.main(args) == 0, "the test file fails on the unmutated code"
for n in names:
    os.environ["MUTANT_UNDER_TEST"] = n
    rc = pytest.main(args)
    print(("killed  " if rc == 1 else f"SURVIVED(rc={{rc}})") + " " + n, file=sys.__stderr__, flush=True)
"""
try:
    r = subprocess.run([sys.executable, "-c", driver], cwd=work, stdout=subprocess.DEVNULL)
    sys.exit(r.returncode)
finally:
    shutil.rmtree(work, ignore_errors=True)
