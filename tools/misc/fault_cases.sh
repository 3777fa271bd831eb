#!/usr/bin/env bash
# Re-run the fault and bad-input checklist (docs/fault_cases.md): every test its table names,
# slow ones included, and nothing else.  bash tools/misc/fault_cases.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
mapfile -t IDS < <(grep -o 'tests/[A-Za-z0-9_/]*\.py::[A-Za-z0-9_]*' docs/fault_cases.md | sort -u)
echo "fault_cases: ${#IDS[@]} tests named in docs/fault_cases.md"
exec "$PY" -m pytest -q "${IDS[@]}" "$@"
