"""Draw a training run's curves into PNGs: losses, learning rate, task-gradient norms and
cosine, the rule's weights and the camera/LiDAR gradient ratio.

Example:
    python tools/analysis/plot_curves.py work_dirs/fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map
    python tools/analysis/plot_curves.py WORK_DIR --out curves/ --smooth 10
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from fuller.utils.quiet import quiet_third_party_warnings  # noqa: E402

quiet_third_party_warnings()

from fuller.visualization.curves import plot_run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('work_dir', help='the run\'s work dir (holds <timestamp>/vis_data/scalars.json)')
    p.add_argument('--out', help='output folder (default: <work_dir>/curves)')
    p.add_argument('--smooth', type=int, default=1, help='moving average over this many logged points')
    args = p.parse_args()
    if not osp.isdir(args.work_dir):
        raise SystemExit(f'plot_curves: work dir not found: {args.work_dir}')
    try:
        paths = plot_run(args.work_dir, args.out, args.smooth)
    except FileNotFoundError as e:
        raise SystemExit(f'plot_curves: {e}') from None
    for path in paths:
        print(path)


if __name__ == '__main__':
    main()
