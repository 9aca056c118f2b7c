"""Where does a `dvc repro` spend its time? Reads `dvc repro`'s output on stdin, passes it
through, and at the end prints the wall seconds of each kind of stage (the time from one
"Running stage" line to the next, so DVC's own bookkeeping of a stage counts with it).

    dvc repro 2>&1 | python bench/stage_times.py
"""

from __future__ import annotations

import re
import sys
import time
from collections import defaultdict

RUNNING = re.compile(r"Running stage '([^']+)'")


def main() -> None:
    t0 = last = time.monotonic()
    current, spent, count = None, defaultdict(float), defaultdict(int)
    for line in sys.stdin:
        sys.stdout.write(line)
        m = RUNNING.search(line)
        if m:
            now = time.monotonic()
            if current is not None:
                spent[current] += now - last
            current, last = m.group(1).split("@")[0], now
            count[current] += 1
    now = time.monotonic()
    if current is not None:
        spent[current] += now - last
    print(f"\n{'stage':20s} {'runs':>5s} {'seconds':>9s} {'per run':>8s}")
    for name in sorted(spent, key=spent.get, reverse=True):
        print(f"{name:20s} {count[name]:5d} {spent[name]:9.1f} {spent[name] / count[name]:8.2f}")
    print(f"{'total':20s} {sum(count.values()):5d} {now - t0:9.1f}")


if __name__ == "__main__":
    main()
