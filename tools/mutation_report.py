"""List mutmut's mutants with their status and the mutated line(s): tools/mutation_report.py [STATUS...]

Reads mutants/ (after tools/mutation.sh); by default prints the survivors ("survived", "no tests",
"timeout" is counted as killed). Read-only: it never applies a mutant to src/.
"""

import sys

from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

wanted = set(sys.argv[1:]) or {"survived", "no tests", "suspicious", "not checked"}
for path in walk_mutatable_files():
    m = SourceFileMutationData(path=path)
    m.load()
    for name, code in m.exit_code_by_key.items():
        status = status_by_exit_code[code]
        if status not in wanted:
            continue
        diff = get_diff_for_mutant(name, path=m.path).splitlines()
        changed = [ln for ln in diff[2:] if ln[:1] in "+-"]
        print(f"{status:10} {name}")
        for ln in changed:
            print(f"           {ln.strip()[:160]}")
