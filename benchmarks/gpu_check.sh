#!/usr/bin/env bash
# The GPU check, as one script for a lent GPU machine (run from the repository root):
#   bash benchmarks/gpu_check.sh
# 1. the CUDA tests (marked `cuda`; they skip without a device, so here they must run),
# 2. the speed suite on the GPU, written to benchmarks/results/speed-cuda/ (and $OUT if set).
# Budget: under 8 minutes on one GPU (the tests take ~1 min, the suite ~4 min).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing to check" >&2
    exit 2
fi
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/ 2>&1 | tail -25
timeout 300 "$PY" -m benchmarks speed --device cuda --no-progress --out benchmarks/results/speed-cuda
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" && cp -r benchmarks/results/speed-cuda "$OUT/"
fi
