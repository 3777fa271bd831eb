#!/usr/bin/env bash
# The GPU check: the CUDA stack (torch, mmcv's ops, spconv, NCCL), the GPU tests, and the GPU
# timings (demo steps fp32/bf16, the nuScenes step at batch 4, the view-transform pooling paths,
# a 1-GPU DDP run with sync='global') in one run of at most 8 minutes; builds nothing.
#   bash tools/gpu_check.sh                       # on a CUDA machine: tables in work_dirs/gpu_check
#   bash tools/gpu_check.sh --out docs/benchmarks --publish   # the project's tables (gpu_*.md)
#   bash tools/gpu_check.sh --dry-run             # the same stages on the CPU at tiny sizes (CI)
# PYTHON: the interpreter (default: the project's .venv if there, else python3). WHEELS: a folder
# of wheels to install first into a scratch site (a machine without a package index).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ -n "${WHEELS:-}" ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fuller_site \
    "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/fuller_site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"
exec "$PY" -m fuller.analysis.gpu_check "$@"
