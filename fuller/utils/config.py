"""Config loading shared by the command-line tools."""

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction


def parse_launcher_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add the flags every launched tool shares (``--cfg-options``, ``--launcher``,
    ``--local-rank``), parse, and export ``LOCAL_RANK`` for torch.distributed."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, e.g. a.b=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None,
                launcher: str = 'none', tool: str = 'fuller') -> Config:
    """Load ``path``, apply ``--cfg-options`` and settle the work dir.

    The work dir is ``work_dir``, else the config's ``work_dir``, else
    ``work_dirs/<config name>``. A missing file exits with a message naming it.
    """
    if not osp.isfile(path):
        raise SystemExit(f'{tool}: config file not found: {path}')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def set_data_root(dataset_cfg, root: str) -> None:
    """Point a dataset config at another nuScenes-format tree: its ``data_root`` and every
    pipeline transform that reads the tree itself (``dataroot``, e.g. ``LoadBEVMapMask``)."""
    dataset_cfg.data_root = root
    for t in dataset_cfg.pipeline:
        if 'dataroot' in t:
            t['dataroot'] = root
