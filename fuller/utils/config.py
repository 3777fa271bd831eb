"""Config loading shared by the command-line tools."""

import os.path as osp

from mmengine.config import Config


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
