#!/usr/bin/env bash
# Create or update FULLER's virtual environment (default: .venv in the repository root).
#
# Used by README, CI (.ci/run) and docker/Dockerfile alike. Idempotent: when nothing in
# requirements/ or setup.py changed since the last successful run and the import check
# passes, it returns in seconds. pip's wheel cache keeps built wheels (mmcv) across runs.
#
# Environment:
#   FULLER_VENV       where the venv lives (default: <repo>/.venv); "none" installs into
#                     the current interpreter (Docker).
#   FULLER_PYTHON     interpreter that creates the venv (default: python3.11, else python3).
#   FULLER_WHEELHOUSE extra folder searched for prebuilt wheels (default: ../shared/wheelhouse
#                     when it exists). A cached mmcv wheel is used only if it imports with the
#                     installed torch; otherwise mmcv is built from source.
#   MAX_JOBS          parallel compile jobs for mmcv (default: number of cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FULLER_VENV:-$ROOT/.venv}"
REQ="$ROOT/requirements"

die() { echo "setup_env: ERROR: $*" >&2; exit 1; }
step() { echo "setup_env: [$(date +%H:%M:%S)] $*"; }

if [[ "$VENV" == none ]]; then
  PY="${FULLER_PYTHON:-python3}"
else
  if [[ ! -x "$VENV/bin/python" ]]; then
    BASE_PY="${FULLER_PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    [[ -n "$BASE_PY" ]] || die "no python3 found; install Python 3.11 (apt-get install python3.11 python3.11-venv python3.11-dev)"
    "$BASE_PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
      || die "$BASE_PY is not Python 3.11; set FULLER_PYTHON to a Python 3.11 interpreter"
    step "creating virtual environment at $VENV"
    "$BASE_PY" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3.11-venv)"
  fi
  PY="$VENV/bin/python"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

STAMP_FILE="$( [[ "$VENV" == none ]] && echo /tmp/fuller-setup.stamp || echo "$VENV/.fuller-setup.stamp" )"
STAMP="$(cat "$REQ"/*.txt "$ROOT/setup.py" "$0" | sha256sum | cut -d' ' -f1)"
CHECK='import fuller, mmdet3d, mmcv.ops, spconv.pytorch, nuscenes, torchjd'
if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] && "$PY" -c "$CHECK" 2>/dev/null; then
  step "environment up to date ($VENV)"
  exit 0
fi

step "build tools"
"${PIP[@]}" install -q -r "$REQ/build.txt" || die "pip could not install requirements/build.txt (network/PyPI reachable?)"

step "torch"
"${PIP[@]}" install -q -r "$REQ/torch.txt" -r "$REQ/build.txt" || die "pip could not install torch (requirements/torch.txt)"
# mmcv's own Python dependencies, so that a cached mmcv wheel can be import-checked.
"${PIP[@]}" install -q -r "$REQ/build.txt" addict "mmengine==0.10.7" opencv-python pyyaml yapf packaging "numpy==1.26.4" \
  || die "pip could not install mmcv's dependencies"

if ! "$PY" -c 'import mmcv, mmcv.ops; from mmcv.ops import Voxelization' 2>/dev/null; then
  WHEELHOUSE="${FULLER_WHEELHOUSE:-$ROOT/../shared/wheelhouse}"
  if [[ -d "$WHEELHOUSE" ]] && ls "$WHEELHOUSE"/mmcv-2.1.0-*.whl >/dev/null 2>&1 \
      && "$PY" -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")'; then
    step "mmcv from the wheel cache $WHEELHOUSE"
    "${PIP[@]}" install -q --no-deps --find-links "$WHEELHOUSE" -r "$REQ/mmcv.txt" || true
    "$PY" -c 'import mmcv.ops' 2>/dev/null || { step "cached wheel unusable, building instead"; "${PIP[@]}" uninstall -y -q mmcv || true; }
  fi
  if ! "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    step "mmcv: building from source with compiled ops (15-25 min on 2 cores; cached afterwards)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install --no-build-isolation -r "$REQ/mmcv.txt" \
      || die "building mmcv failed: it needs gcc/g++ and the Python headers (apt-get install build-essential python3.11-dev)"
    "$PY" -c 'import mmcv.ops' || {
      step "cached mmcv wheel does not match this torch; rebuilding without the cache"
      "${PIP[@]}" uninstall -y -q mmcv
      MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install --no-cache-dir --no-build-isolation -r "$REQ/mmcv.txt" \
        || die "building mmcv failed"
    }
  fi
fi

step "runtime stack"
"${PIP[@]}" install -q -r "$REQ/runtime.txt" -r "$REQ/tests.txt" -r "$REQ/build.txt" || die "pip could not install requirements/runtime.txt"
"${PIP[@]}" install -q --no-deps -r "$REQ/mmdet3d.txt" || die "pip could not install mmdet3d"

step "FULLER (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT" || die "pip could not install the fuller package"

step "checking imports"
"$PY" -c "$CHECK" || die "the installed stack does not import; see the traceback above"
echo "$STAMP" > "$STAMP_FILE"
step "done: activate with 'source ${VENV}/bin/activate'"
