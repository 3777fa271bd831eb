"""Config loading and resolution: one statement of the geometry and the dataset facts handed to
every part that needs it. It sits above the packages whose classes it looks up; the registries
import those packages themselves (their ``locations``), so nothing here imports them."""

import difflib
import inspect
import os.path as osp
import re
import sys

from mmengine.config import Config

from fuller.registry import DATASETS, METRICS, MODELS
from fuller.utils import usable_cpus

__all__ = ['apply_variant', 'check_cfg_options', 'data_roots', 'drop_pretrained', 'explain_registry_error',
           'keep_submission_files', 'load_config', 'pretrained_files', 'read_config', 'resolve_config', 'set_data_root',
           'stale_demo_data']


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
                launcher: str = 'none', tool: str = 'fuller', edit=None) -> Config:
    """Load ``path``, apply ``--cfg-options`` and settle the work dir.

    The work dir is ``work_dir``, else the config's ``work_dir``, else
    ``work_dirs/<config name>``. A missing file exits with a message naming it. ``edit``: a
    function applied to the config before it is resolved (a tool's flags that change what the
    resolution decides, e.g. ``tools/train.py --amp``).
    """
    if not osp.isfile(path):
        raise SystemExit(f'{tool}: config file not found: {path}')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        check_cfg_options(cfg, cfg_options, path, tool)
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    if edit is not None:
        edit(cfg)
    cfg = resolve_config(cfg)
    for problem in stale_demo_data(cfg):
        print(f'{tool}: warning: {problem}; its numbers are not those of this version (make it again: '
              '`bash tools/run_demo.sh` does for data/nuscenes-demo, or `python tools/create_demo_data.py --out '
              'ROOT` then `python tools/create_data.py nuscenes --root-path ROOT --version v1.0-mini`)',
              file=sys.stderr, flush=True)
    return cfg


def data_roots(cfg: Config) -> list[str]:
    """The distinct ``data_root`` of the train, val and test datasets (wrapped or not), in that order."""
    roots = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if isinstance(loader, dict) and isinstance(loader.get('dataset'), dict):
            root = base_dataset(loader['dataset']).get('data_root')
            if root and root not in roots:
                roots.append(root)
    return roots


def stale_demo_data(cfg: Config) -> list[str]:
    """Why each demo dataset the config reads is of another world version than this code makes
    (``fuller.demo.WORLD_VERSION``); data without a demo manifest (real nuScenes) is not checked."""
    from fuller.demo import WORLD_VERSION, demo_data_problem, demo_world_version
    return [demo_data_problem(root) for root in data_roots(cfg)
            if demo_world_version(root) not in (None, WORLD_VERSION)]


def read_config(path: str, edit=None) -> Config:
    """``Config.fromfile(path)`` resolved (:func:`resolve_config`): what to build a model or a
    dataset from outside the tools. ``edit``: a function applied to the config before it is
    resolved (as :func:`load_config`'s)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if edit is not None:
        edit(cfg)
    return resolve_config(cfg)


def _strip_delete(node):
    if isinstance(node, dict):
        node.pop('_delete_', None)
        for v in node.values():
            _strip_delete(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _strip_delete(v)


def _without_removed_parts(fragment: dict, base: dict) -> dict:
    """``fragment`` less its settings of parts that ``base`` has removed (set to ``None``, e.g. the
    camera encoder of LiDAR-only): a fragment that configures the camera applies to every variant
    that has one and leaves LiDAR-only as it is."""
    out = {}
    for k, v in fragment.items():
        if isinstance(v, dict) and k in base and base[k] is None and not v.get('_delete_'):
            continue
        out[k] = _without_removed_parts(v, base[k]) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def apply_variant(base: str, *variants: str) -> Config:
    """The config ``base`` with each of ``variants`` merged over it in turn, as ``_base_`` merges.

    A variant (``configs/ablation/*.py``) is a config fragment with no model, data or
    optimizer of its own, so one set of variants applies to every base and a schedule change
    in the base reaches every variant. Dicts marked ``_delete_=True`` in a variant replace
    the base's (the calibration rules: one rule's arguments never carry over to another; an
    optimizer swap such as ``configs/ablation/optimizers/sgd.py``). A fragment's settings of a
    part the config has removed (``None``: the camera of LiDAR-only) are left out.
    """
    for path, what in ((base, 'base config'), *((v, 'variant') for v in variants)):
        if not osp.isfile(path):
            raise SystemExit(f'{what} not found: {path}')
    cfg = Config.fromfile(base)
    for variant in variants:
        cfg.merge_from_dict(_without_removed_parts(Config.fromfile(variant).to_dict(), cfg.to_dict()))
        merged = cfg.to_dict()
        _strip_delete(merged)
        cfg = Config(merged, filename=base)
    return cfg


def _accepts(registry, type_name, arg: str) -> bool:
    cls = registry.get(type_name) if isinstance(type_name, str) else type_name
    return cls is not None and arg in inspect.signature(cls.__init__).parameters


def keep_submission_files(cfg: Config, directory: str) -> None:
    """Point every test metric that takes a ``jsonfile_prefix`` and has none at ``directory``."""
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    for ev in evaluators:
        if _accepts(METRICS, ev.get('type'), 'jsonfile_prefix') and not ev.get('jsonfile_prefix'):
            ev['jsonfile_prefix'] = directory


def _datasets(cfg: Config):
    """Every dataset config of the dataloaders, wrapped ones included (``dataset.dataset``)."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = (cfg.get(key) or {}).get('dataset')
        while isinstance(ds, dict):
            yield key, ds
            ds = ds.get('dataset')


def resolve_config(cfg: Config) -> Config:
    """Hand a config's single statements to every part that needs them (in place; returns
    ``cfg``; running it again changes nothing):

    - ``geometry`` (top level: point-cloud range, voxel size, BEV stride, image size, map
      bound) goes to every dataset, which fills its pipeline from it, and to the model, which
      derives its grids from it (:mod:`fuller.models.derive`);
    - ``metainfo`` (top level, e.g. ``dict(classes=[...])``) goes to every dataset over its
      ``METAINFO``, and the resulting ``classes`` and ``map_classes`` to the model's heads.
      Metrics and hooks read the same facts from the built dataset (``dataset_meta``);
    - ``trust_info_files`` (top level, ``--trust-info-files``) goes to every dataset as
      ``trust_info_file`` (read its info file with the full unpickler);
    - a data loader's ``num_workers='auto'`` becomes :func:`auto_num_workers` (no worker
      processes on a machine of 2 cores, where they take the cores from the model's threads);
    - the model's ``channels_last='bf16'`` becomes whether ``optim_wrapper.amp`` trains in
      bf16 (``'auto'`` decided as the wrapper will: :func:`fuller.utils.auto_precision`).

    Called by the tools (:func:`load_config`) and by ``FullerRunner.from_cfg``.
    """
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if isinstance(loader, dict) and loader.get('num_workers') == 'auto':
            loader['num_workers'] = auto_num_workers()
            if loader['num_workers'] == 0:
                loader['persistent_workers'] = False
    geometry, metainfo = cfg.get('geometry'), cfg.get('metainfo')
    trust_info = bool(cfg.get('trust_info_files', False))
    model_meta = None
    for _, ds in _datasets(cfg):
        cls = DATASETS.get(ds.get('type')) if isinstance(ds.get('type'), str) else ds.get('type')
        if cls is None or not hasattr(cls, '_load_metainfo'):
            continue
        if trust_info and _accepts(DATASETS, cls, 'trust_info_file'):
            ds['trust_info_file'] = True
        if geometry is not None and _accepts(DATASETS, cls, 'geometry'):
            ds['geometry'] = geometry
        if metainfo is not None:
            ds['metainfo'] = {**(ds.get('metainfo') or {}), **metainfo}
        if model_meta is None and 'dataset' not in ds:
            model_meta = cls._load_metainfo(ds.get('metainfo'))
    model = cfg.get('model')
    if isinstance(model, dict) and model.get('channels_last') == 'bf16':
        model['channels_last'] = trains_in_bf16(cfg.get('optim_wrapper'))
    if isinstance(model, dict) and _accepts(MODELS, model.get('type'), 'geometry'):
        if geometry is not None:
            model['geometry'] = geometry
        if model_meta is not None:
            model['metainfo'] = {k: list(model_meta[k]) for k in ('classes', 'map_classes') if k in model_meta}
    return cfg


def trains_in_bf16(optim_wrapper: dict | None) -> bool:
    """Whether this optimizer wrapper config trains under bf16 autocast (``amp='bfloat16'``, or
    ``'auto'`` on a device with native bf16 units)."""
    amp = (optim_wrapper or {}).get('amp')
    if amp == 'auto':
        from fuller.utils import auto_precision

        amp = auto_precision(device_type=(optim_wrapper or {}).get('device_type'))[0]
    return amp == 'bfloat16'


def auto_num_workers(cpus: int | None = None) -> int:
    """Data-loader worker processes for ``num_workers='auto'``: none with at most 2 CPUs (on a
    2-core Xeon the demo job ran at 0.34 s/it loading in the main process against 0.39 s/it with
    1 or 2 workers, whose loading preempts one of the model's two threads), else half the CPUs
    up to 4. ``cpus``: the CPUs this process may run on (default: its affinity mask)."""
    if cpus is None:
        cpus = usable_cpus()
    return 0 if cpus <= 2 else min(4, cpus // 2)


def base_dataset(dataset_cfg):
    """The dataset config inside any wrappers (``CBGSDataset(dataset=...)``, ...)."""
    while isinstance(dataset_cfg, dict) and isinstance(dataset_cfg.get('dataset'), dict):
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def set_data_root(dataset_cfg, root: str) -> None:
    """Point a dataset config (wrapped or not) at another nuScenes-format tree: its
    ``data_root`` and every pipeline transform that reads the tree itself (``dataroot``, e.g.
    ``LoadBEVMapMask``)."""
    dataset_cfg = base_dataset(dataset_cfg)
    dataset_cfg.data_root = root
    for t in dataset_cfg.pipeline:
        if 'dataroot' in t:
            t['dataroot'] = root


_NOT_REGISTERED = re.compile(r"'?([\w.:]+) is not in the ([\w:]+) registry")


def _init_cfg_holders(node, path: str = 'model'):
    """``(path, dict)`` of every dict in a config tree that has an ``init_cfg``, depth first."""
    if isinstance(node, dict):
        if 'init_cfg' in node:
            yield path, node
        for k, v in node.items():
            if k != 'init_cfg':
                yield from _init_cfg_holders(v, f'{path}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _init_cfg_holders(v, f'{path}[{i}]')


def _is_pretrained(entry) -> bool:
    return isinstance(entry, dict) and entry.get('type') == 'Pretrained'


def _entries(init) -> list:
    """An ``init_cfg`` (a dict, a list of dicts or None) as a list of entries."""
    return [init] if isinstance(init, dict) else list(init) if isinstance(init, list) else []


def drop_pretrained(node, path: str = 'model') -> list[str]:
    """Remove every ``Pretrained`` entry from the ``init_cfg``\\s of a model config (in place), so
    that it builds and initialises without its checkpoint files: for what does not depend on the
    starting weights (the tests' tiny runs, the speed benchmarks). A module left without an
    ``init_cfg`` gets its class's default initialisation. Returns the keys it changed."""
    changed = []
    for key, holder in _init_cfg_holders(node, path):
        init = holder['init_cfg']
        kept = [e for e in _entries(init) if not _is_pretrained(e)]
        if len(kept) != len(_entries(init)):
            holder['init_cfg'] = (kept or None) if isinstance(init, list) else None
            changed.append(f'{key}.init_cfg')
    return changed


def pretrained_files(node) -> list[str]:
    """The checkpoint files of every ``Pretrained`` ``init_cfg`` entry in a (model) config, in order."""
    out = []
    for _, holder in _init_cfg_holders(node):
        for e in _entries(holder['init_cfg']):
            if _is_pretrained(e) and e.get('checkpoint') not in out:
                out.append(e.get('checkpoint'))
    return out


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


