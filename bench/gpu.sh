#!/usr/bin/env bash
# The GPU checks, as one short script for a lent GPU machine (the figures of docs/reproducing.md,
# "Cost per epoch", and docs/timings.md were made by it). From the repository root, with torch,
# torchvision and transformers installed and grmu's other dependencies importable:
#     OUT=gpu-out bash bench/gpu.sh
# Wheels of the missing packages in .whl/ are installed first (pip --no-deps), then grmu (editable).
# Each step has its own time limit, so that one slow step cannot eat the others; every step's
# output goes to $OUT/<step>.txt.
#   1. bench/epoch_cost.py: one epoch of each recipe (ResNet-18 bf16, BERT fp32, CIFAR ResNet fp32),
#      grmu's loop against the official-style one;
#   2. bench/determinism.py: the same seed twice gives the same weights, bit for bit, on the GPU;
#   3. bench/ensemble.py: the audit's ensemble trainer against one model at a time;
#   4. the fast test suite with CUDA as grmu's device.
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=src
if ls .whl/*.whl >/dev/null 2>&1; then  # a bare, borrowed machine: into its own environment
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
step() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2> >(grep -v -e "it/s" -e "s/it" -e "epoch/s" -e "s/epoch" >&2) | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
step epoch_cost "${EPOCH_COST_S:-220}" python3 bench/epoch_cost.py --samples "${SAMPLES:-4096}"
step determinism "${DETERMINISM_S:-90}" python3 bench/determinism.py
step ensemble "${ENSEMBLE_S:-100}" python3 bench/ensemble.py --models 16 --epochs 2 --repeat 2
step tests "${TESTS_S:-150}" python3 -m pytest -q -m "not slow" -p no:cacheprovider -n 8 --no-header -rf
