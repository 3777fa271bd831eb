"""Config loading shared by the command-line tools."""

import argparse
import difflib
import os
import os.path as osp
import re

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


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """The flags that say how a checkpoint given to a tool is loaded (see ``FullerRunner``)."""
    parser.add_argument('--load-partial', action='store_true',
                        help='load only the checkpoint tensors that fit the model and list the rest in the log '
                             '(default: a checkpoint that does not fit exactly is an error)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load the checkpoint with the full unpickler, e.g. one of plain mmengine/mmdet3d '
                             'training; it can run code, so only for files from a trusted source (to take only '
                             'the weights of any file safely: tools/misc/extract_weights.py)')


def check_cfg_options(cfg: Config, cfg_options: dict, path: str, tool: str = 'fuller') -> None:
    """Refuse ``--cfg-options`` whose top-level key is not in the config (a typo such as
    ``trian_cfg.max_iters=2`` would otherwise be added silently and ignored)."""
    for key in cfg_options:
        top = key.split('.')[0]
        if top not in cfg:
            close = difflib.get_close_matches(top, list(cfg.keys()), n=3)
            hint = f'; did you mean {" or ".join(repr(c) for c in close)}?' if close else ''
            raise SystemExit(f'{tool}: --cfg-options {key}=...: {path} has no top-level key {top!r}{hint}')


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
        check_cfg_options(cfg, cfg_options, path, tool)
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


_NOT_REGISTERED = re.compile(r"'?([\w.:]+) is not in the ([\w:]+) registry")


def _type_paths(node, name: str, path: str = '') -> list[str]:
    """Config paths of every ``type`` key whose value is ``name`` (with or without a scope)."""
    found = []
    if isinstance(node, dict):
        t = node.get('type')
        if isinstance(t, str) and (t == name or t.split('.')[-1] == name.split('.')[-1]):
            found.append(f'{path}.type' if path else 'type')
        for k, v in node.items():
            found += _type_paths(v, name, f'{path}.{k}' if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found += _type_paths(v, name, f'{path}[{i}]')
    return found


def explain_registry_error(cfg: Config, err: BaseException) -> str | None:
    """For mmengine's "X is not in the Y registry" error: the message with the config key(s)
    that name ``X``; ``None`` for any other error."""
    m = _NOT_REGISTERED.search(str(err))
    if not m:
        return None
    name, registry = m.group(1), m.group(2)
    paths = _type_paths(cfg.to_dict(), name)
    where = ' and '.join(paths) if paths else 'a type in the config'
    return (f'{where} = {name!r} in {cfg.filename}: no such type in the {registry} registry '
            '(misspelt, or its module not imported by custom_imports?)')


def finish_distributed() -> None:
    """End a launcher's process group cleanly: every rank waits for the others (rank 0 may still be
    evaluating or writing files) before the group is torn down, so no rank exits while a peer's
    connection is still in use."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
