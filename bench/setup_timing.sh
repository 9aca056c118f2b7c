#!/usr/bin/env bash
# How long does the README's set-up take? Installs the exact lock (requirements.txt +
# constraints.txt + grmu editable) into fresh virtual environments in a temporary folder with
# each installer, first with an empty package cache (cold: everything downloaded) and then again
# with the cache that run filled (warm), and prints the seconds and the ratios.
#
#   bash bench/setup_timing.sh            # pip and uv (uv pinned as in tools/setup.sh)
#   bash bench/setup_timing.sh uv         # one installer only
#
# Network-bound: run it alone, on a quiet connection; it downloads the lock twice (~6 GB
# unpacked each, with the CUDA libraries torch's wheel pulls) and removes everything after.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=$(sed -n 's/^UV_VERSION=//p' tools/setup.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

install() {  # installer cache-dir venv (runs in $(...), where errexit is not inherited)
    set -e
    python3 -m venv "$3"
    "$3/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
    local start end
    start=$(date +%s.%N)
    if [ "$1" = uv ]; then
        UV_CACHE_DIR="$2" "$3/bin/uv" pip install --python "$3/bin/python" -q --compile-bytecode -r requirements.txt -c constraints.txt -e .
    else
        PIP_CACHE_DIR="$2" "$3/bin/pip" install -q --disable-pip-version-check -r requirements.txt -c constraints.txt -e .
    fi
    end=$(date +%s.%N)
    "$3/bin/python" -c "import torch, torchvision, dvc, transformers, grmu" >/dev/null
    rm -rf "$3"
    python3 -c "print(f'{$end - $start:.1f}')"
}

declare -A t
installers=${*:-pip uv}
for installer in $installers; do
    t[$installer-cold]=$(install "$installer" "$work/cache-$installer" "$work/venv")
    t[$installer-warm]=$(install "$installer" "$work/cache-$installer" "$work/venv")
    echo "$installer: cold ${t[$installer-cold]} s, warm ${t[$installer-warm]} s"
done
[ -n "${t[pip-cold]:-}" ] && [ -n "${t[uv-cold]:-}" ] || exit 0
python3 - "${t[pip-cold]}" "${t[pip-warm]}" "${t[uv-cold]}" "${t[uv-warm]}" <<'PY'
import sys
pc, pw, uc, uw = map(float, sys.argv[1:])
print(f"uv vs pip: {pc / uc:.1f}x faster cold, {pw / uw:.1f}x faster warm")
PY
