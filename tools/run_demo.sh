#!/usr/bin/env bash
# The main job on the embedded demo data: set up, generate the demo dataset if needed,
# train FULLER's demo model on the CPU, then evaluate it (mAP/NDS/mIoU table, metrics JSON, pictures).
#   CONFIG=... WORK_DIR=... bash tools/run_demo.sh [extra tools/train.py --cfg-options ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
PY="$ROOT/.venv/bin/python"
CONFIG="${CONFIG:-configs/fuller/fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py}"
WORK_DIR="${WORK_DIR:-work_dirs/$(basename "${CONFIG%.py}")}"
# The demo data, made again when it is not the world this code generates (fuller.demo.WORLD_VERSION)
"$PY" tools/create_demo_data.py --out data/nuscenes-demo --only-if-stale
# infos and the GT-paste database (a data folder from before the database gets it added)
if [[ ! -f data/nuscenes-demo/nuscenes_infos_val.pkl || ! -f data/nuscenes-demo/nuscenes_dbinfos_train.pkl ]]; then
  "$PY" tools/create_data.py nuscenes --root-path data/nuscenes-demo --version v1.0-mini --max-sweeps 4
fi
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT="$(cat "$WORK_DIR/last_checkpoint")"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" --show-dir vis --show-interval 4
echo "metrics: $WORK_DIR/metrics.json; pictures: $WORK_DIR/vis/"
