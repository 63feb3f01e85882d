#!/usr/bin/env bash
# The CUDA checks and figures in one short run (< 8 min on one modern GPU):
#   1. what the machine has (nvidia-smi, torch, CUDA);
#   2. the tests that need CUDA (tests/test_cuda.py: GPU ranking and neighbour search equal the
#      CPU's, `fit` on the GPU with dense Adam, DDP on two GPUs when there are two);
#   3. a full EvalRS-scale fold on the GPU: `tripletlit fit --preset evalrs --folds 1
#      --accelerator gpu` through benchmarks/bench_fit.py (wall, peak memory, stage shares,
#      training rows/s);
#   4. the same fold with DDP over every GPU when there are two or more.
# Usage: benchmarks/gpu.sh            (PYTHON=... to choose the interpreter; default .venv/bin/python)
# Each step has its own time limit, so one hang cannot eat the whole budget.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export WANDB_MODE=disabled
status=0
step() { echo; echo "=== $1"; }

step "machine"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || { echo "no nvidia-smi: not a CUDA machine"; exit 1; }
"$PY" -c "import torch, tripletlit; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'devices', torch.cuda.device_count(), torch.cuda.get_device_name(0))" || exit 1
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")

step "CUDA tests"
timeout 240 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py || status=1

step "one EvalRS-scale fold on one GPU"
timeout 300 "$PY" benchmarks/bench_fit.py --preset evalrs --folds 1 -- --accelerator gpu || status=1

if [ "$GPUS" -ge 2 ]; then
  step "the same fold with DDP on $GPUS GPUs (batch 512 per device)"
  timeout 240 "$PY" benchmarks/bench_fit.py --preset evalrs --folds 1 -- --accelerator gpu --devices "$GPUS" --strategy ddp || status=1
fi
echo; echo "gpu.sh done (exit $status); figures in benchmarks/out/fit-evalrs.json"
exit $status
