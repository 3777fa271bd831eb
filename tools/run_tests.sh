#!/usr/bin/env bash
# Set up (or reuse) the environment and run the whole test suite, slow tests included.
# This is the README's test command and exactly what CI (.ci/run) runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
bash tools/setup_env.sh
echo "run_tests: set-up took $(( $(date +%s) - start )) s"
PY="${FULLER_VENV:-$ROOT/.venv}/bin/python"
[[ "${FULLER_VENV:-}" == none ]] && PY=python3
t0=$(date +%s)
"$PY" -m ruff check fuller tools tests configs
"$PY" -m pytest "$@"
echo "run_tests: tests took $(( $(date +%s) - t0 )) s"
