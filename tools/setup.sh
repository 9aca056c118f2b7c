#!/usr/bin/env bash
# Set up grmu in .venv: the exact lock (requirements.txt + constraints.txt, grmu itself editable),
# installed by uv (pinned below, from PyPI; GRMU_INSTALLER=pip uses pip instead, same lock), then
# the offline page template of `dvc plots show` (grmu plots-page; needs npm once, else skipped).
#
#   bash tools/setup.sh && . .venv/bin/activate
#
# Timings of both installers, cold and with a warm package cache: bash bench/setup_timing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8

python3 -m venv .venv
if [ "${GRMU_INSTALLER:-uv}" = uv ]; then
    .venv/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION"
    # --compile-bytecode: uv (unlike pip) writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is
    # set (many containers) every stage would then compile torch's sources again: seconds per stage
    .venv/bin/uv pip install --python .venv/bin/python -q --compile-bytecode -r requirements.txt -c constraints.txt -e .
else
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt -e .
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/grmu/npm"
if command -v npm >/dev/null || ls "$cache"/*.tgz >/dev/null 2>&1; then
    .venv/bin/grmu plots-page || echo "note: no offline plots page (above: why); dvc plots show will load vega" \
                                      "from its CDN until \`grmu plots-page\` succeeds" >&2
else
    echo "note: npm not found, so no offline plots page: dvc plots show will load vega from its CDN" \
         "(see docs/metrics.md, Plots offline)" >&2
fi
