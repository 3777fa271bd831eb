"""Create info files for a nuScenes-format dataset (real nuScenes or FULLER's demo data), and the
ground-truth database of its train split for GT-paste (``<tag>_gt_database/`` and
``<tag>_dbinfos_train.pkl``; ``--no-gt-database`` to skip it).

Example:
    python tools/create_data.py nuscenes --root-path data/nuscenes --version v1.0-trainval
    python tools/create_data.py nuscenes --root-path data/nuscenes-demo --version v1.0-mini
"""

import argparse
import os.path as osp

from fuller.utils.quiet import quiet_third_party_warnings

quiet_third_party_warnings()

from fuller.datasets.create_infos import create_nuscenes_infos  # noqa: E402
from fuller.datasets.gt_database import create_gt_database  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', choices=['nuscenes'])
    p.add_argument('--root-path', required=True)
    p.add_argument('--version', default='v1.0-trainval', choices=['v1.0-mini', 'v1.0-trainval', 'v1.0-test'])
    p.add_argument('--out-dir', default=None, help='defaults to --root-path')
    p.add_argument('--extra-tag', default='nuscenes')
    p.add_argument('--max-sweeps', type=int, default=10)
    p.add_argument('--no-gt-database', action='store_true', help='do not build the GT-paste database')
    p.add_argument('--db-sweeps', type=int, default=10,
                   help='previous sweeps in the database objects\' points (BEVFusion: 10; at most --max-sweeps are '
                        'recorded)')
    args = p.parse_args()
    if not osp.isdir(osp.join(args.root_path, args.version)):
        raise SystemExit(f'create_data: {osp.join(args.root_path, args.version)} does not exist; '
                         f'is --root-path a nuScenes root and --version right?')
    out_dir = args.out_dir or args.root_path
    if not osp.isdir(out_dir):  # checked before any info is computed
        raise SystemExit(f'create_data: --out-dir {out_dir} does not exist; create it first')
    out = osp.join(out_dir, args.extra_tag)
    written = create_nuscenes_infos(args.root_path, args.version, out, args.max_sweeps)
    for split, path in written.items():
        print(f'[create_data] {split}: {path}')
    if not args.no_gt_database and 'train' in written:
        # the database lies in the data root, where the configs' ObjectPaste looks for it
        path = create_gt_database(args.root_path, osp.abspath(written['train']), args.extra_tag, args.db_sweeps)
        print(f'[create_data] gt database: {path}')


if __name__ == '__main__':
    main()
