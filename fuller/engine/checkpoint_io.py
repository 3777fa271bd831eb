"""Checkpoint files that survive a kill, and finding the newest good one to resume from.

:class:`AtomicLocalBackend` (file backend ``'atomic_local'``) writes every file to a
temporary sibling, flushes it to disk and renames it over the target (``os.replace`` is
atomic on POSIX), so a process killed while saving leaves the previous checkpoint and the
previous ``last_checkpoint`` pointer intact. The default runtime config selects it for the
checkpoint hook, with ``background=True``: training goes on while a checkpoint goes to disk.
"""

import errno
import glob
import os
import os.path as osp
import re
import tempfile
import warnings
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from mmengine.fileio import LocalBackend, register_backend


class CheckpointSaveError(OSError):
    """A checkpoint (or its ``last_checkpoint`` pointer) could not be written. Names the file and
    says that the previous checkpoint is intact."""


class _CheckpointWriter:
    """One thread that writes checkpoint files, one at a time and in the order they come."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def submit(self, fn, *args) -> None:
        self.wait()  # at most one file in flight (and its memory); its error surfaces here
        if self._pool is None:
            # Its thread is joined at the interpreter's exit: a write under way is finished.
            self._pool = ThreadPoolExecutor(1, thread_name_prefix='checkpoint-writer')
        self._pending = self._pool.submit(fn, *args)

    def then(self, fn, *args) -> None:
        """Run ``fn`` after the file in flight, once that file is written (not if it failed)."""
        previous = self._pending
        if previous is None:
            fn(*args)
            return

        def after() -> None:
            previous.result()  # its error, not fn, then
            fn(*args)

        self._pending = self._pool.submit(after)

    def pending(self) -> bool:
        return self._pending is not None

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


_WRITER = _CheckpointWriter()


def wait_for_checkpoint_writes() -> None:
    """Return once every checkpoint file handed to a background :class:`AtomicLocalBackend` is
    on disk under its name; raises the :class:`CheckpointSaveError` of one that failed."""
    _WRITER.wait()


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """Local file backend whose writes are atomic (temp file + fsync + rename).

    Args:
        background: write ``put``'s files (the checkpoints) in a background thread, one at a
            time and in order: the training step goes on meanwhile. A new checkpoint of the
            demo model (48 MB) took 0.3-0.4 s in ``write`` on a 2-core Zen 5 EPYC's virtual
            disk, the disk's pace, 9 times a main job. Any other call of the backend (the
            hook's look-up and removal of old checkpoints, ``put_text``) first waits for the
            file in flight, a failed write raises at the next call or when training ends
            (:class:`FullerRunner` waits for the last file), and the file still appears only
            complete, under its name. With mmengine's own checkpoint hook, which writes the
            ``last_checkpoint`` pointer while the file is in flight, a process killed within
            that second leaves a pointer to a missing file, which ``--resume`` reports and
            passes over for the previous checkpoint (:func:`find_latest_good_checkpoint`).
            :class:`~fuller.engine.checkpoint_hook.FullerCheckpointHook` (the default runtime's)
            instead moves its ``last_checkpoint`` pointer only once the file is on disk.
    """

    def __init__(self, background: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.background = background

    @staticmethod
    def _atomic_write(data: bytes, filepath: str) -> None:
        filepath = str(filepath)
        d = osp.dirname(osp.abspath(filepath))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=d)
        try:
            # mkstemp creates the file as 0600; give it the mode a plain open() would (0666 minus
            # the umask), so that teammates on a shared cluster can read checkpoints.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException as e:
            if osp.exists(tmp):
                os.remove(tmp)
            if isinstance(e, OSError) and not isinstance(e, CheckpointSaveError):
                why = 'the disk is full' if e.errno == errno.ENOSPC else (e.strerror or str(e))
                raise CheckpointSaveError(
                    e.errno, f'could not write {filepath}: {why}. Nothing was replaced: the previous checkpoint '
                    f'and the last_checkpoint pointer in {d} are as they were, and --resume continues from '
                    'them once there is room') from e
            raise

    def put(self, obj: bytes, filepath) -> None:
        if self.background:
            _WRITER.submit(self._atomic_write, obj, filepath)
        else:
            _WRITER.wait()
            self._atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        _WRITER.wait()
        self._atomic_write(obj.encode(encoding), filepath)

    def isfile(self, filepath) -> bool:
        _WRITER.wait()
        return super().isfile(filepath)

    def exists(self, filepath) -> bool:
        _WRITER.wait()
        return super().exists(filepath)

    def remove(self, filepath) -> None:
        _WRITER.wait()
        super().remove(filepath)


def _iter_of(path: str) -> int:
    m = re.search(r'iter_(\d+)\.pth$', path) or re.search(r'epoch_(\d+)\.pth$', path)
    return int(m.group(1)) if m else -1


def checkpoint_loads(path: str) -> bool:
    """True if ``path`` is a complete checkpoint (loads with the safe unpickler, has weights)."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return isinstance(ckpt, dict) and 'state_dict' in ckpt


def find_latest_good_checkpoint(work_dir: str) -> str | None:
    """The newest checkpoint in ``work_dir`` that loads: the one ``last_checkpoint`` names
    first, then ``iter_*.pth`` / ``epoch_*.pth`` from the highest count down. Unusable files
    are reported with a warning and skipped. ``None`` if there is none."""
    candidates = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.append(named if osp.isabs(named) else osp.join(work_dir, osp.basename(named)))
    files = glob.glob(osp.join(work_dir, 'iter_*.pth')) + glob.glob(osp.join(work_dir, 'epoch_*.pth'))
    candidates += sorted(files, key=_iter_of, reverse=True)
    seen = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        if not osp.isfile(path):
            warnings.warn(f'resume: {path} (named in {pointer}) does not exist; looking for an older checkpoint')
            continue
        if checkpoint_loads(path):
            return path
        warnings.warn(f'resume: {path} is incomplete or corrupt; looking for an older checkpoint')
    return None


# ---------------------------------------------------------------------------- loading weights


class CheckpointLoadError(RuntimeError):
    """A checkpoint file cannot be read (missing, corrupt, or not loadable safely). Names the file."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's tensors do not match the model. Names the file and the keys."""


def load_checkpoint_file(path: str, trusted: bool = False, map_location='cpu') -> dict:
    """Read a checkpoint file.

    Args:
        path: a local ``.pth`` file.
        trusted: load with the full unpickler (``weights_only=False``), which runs code the
            file names: only for files from a trusted source, such as checkpoints of plain
            mmengine/mmdet3d training (their ``message_hub`` holds mmengine objects). By
            default the safe unpickler reads tensors and plain data only.
        map_location: as in :func:`torch.load`.

    Raises:
        CheckpointLoadError: the file is missing or corrupt, or holds objects the safe
            unpickler refuses; the message says how to proceed.
    """
    if not osp.isfile(path):
        raise CheckpointLoadError(f'checkpoint file not found: {path}')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as e:  # noqa: BLE001 - reported with the file's name
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not trusted and ('weights_only' in str(e) or 'Unsupported global' in str(e)):
            raise CheckpointLoadError(
                f'{path} holds Python objects besides tensors (e.g. a checkpoint of plain mmengine/mmdet3d '
                f'training), which the safe loader refuses ({first}). If you trust its source, load it with '
                f'--trust-checkpoint (trust_checkpoint=True); otherwise take only its weights, without running '
                f'any code from it: python tools/misc/extract_weights.py {path} OUT.pth') from e
        raise CheckpointLoadError(f'cannot read checkpoint {path}: {type(e).__name__}: {first} '
                                  '(incomplete download or not a PyTorch checkpoint?)') from e
    if not isinstance(ckpt, dict):
        raise CheckpointLoadError(f'{path} is not a checkpoint: it holds a {type(ckpt).__name__}, not a dict')
    return ckpt


class _Inert:
    """Stands in for any class or function an untrusted pickle names: accepts its arguments
    and state and does nothing with them."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def _inert_pickle_module():
    """A ``pickle``-like module whose unpickler resolves only the globals torch's safe
    (``weights_only``) unpickler allows and replaces every other one by an inert class."""
    import pickle
    import types

    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = _get_allowed_globals()

    class InertUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            obj = allowed.get(f'{module}.{name}')
            if obj is not None:
                return obj
            return type(name, (_Inert,), {'__module__': f'inert.{module}'})

    mod = types.ModuleType('fuller_inert_pickle')
    mod.Unpickler = InertUnpickler
    mod.load = lambda f, **kw: InertUnpickler(f, **kw).load()
    mod.__name__ = 'fuller_inert_pickle'
    return mod


def extract_state_dict(path: str) -> dict:
    """The tensors of ``path``'s ``state_dict`` (or of the file, if it is a bare state dict),
    read without running any code the file names: every non-tensor object becomes inert.
    For checkpoints of untrusted origin that the safe loader refuses (plain mmengine/mmdet3d
    ones); ``tools/misc/extract_weights.py`` writes the result as a safe checkpoint."""
    if not osp.isfile(path):
        raise CheckpointLoadError(f'checkpoint file not found: {path}')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False, pickle_module=_inert_pickle_module())
    except Exception as e:  # noqa: BLE001 - reported with the file's name
        raise CheckpointLoadError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointLoadError(f'{path} has no state_dict')
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointLoadError(f'{path}: its state_dict holds no tensors')
    return tensors


def load_units(model: torch.nn.Module) -> list[str]:
    """The parts of ``model`` that ``--load-partial`` loads whole or not at all.

    A model may name them (``model.load_units()``; FullerNet's are ``encoders.camera.backbone``,
    ``encoders.camera.neck``, ``encoders.camera.vtransform``, the LiDAR encoder's parts, ``fuser``,
    ``decoder.backbone``, ``decoder.neck``, ``heads.det``, ``heads.map``); otherwise they are the
    entries of every top-level ``ModuleDict`` and every other top-level child.
    """
    if hasattr(model, 'load_units'):
        return list(model.load_units())
    units = []
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleDict):
            units += [f'{name}.{key}' for key in child]
        else:
            units.append(name)
    return units


def unit_of(key: str, units: list[str]) -> str:
    """The longest unit that ``key`` lies in (the key's top-level name when none does)."""
    best = ''
    for u in units:
        if (key == u or key.startswith(u + '.')) and len(u) > len(best):
            best = u
    return best or key.split('.')[0]


class StateDictReport:
    """How a checkpoint's tensors match a model's: what loads, what is missing, unexpected or
    of another shape, and, per load unit (:func:`load_units`), how many of the unit's tensors fit."""

    def __init__(self, loadable: dict, missing: list, unexpected: list, mismatched: list,
                 unit_of_key: dict | None = None) -> None:
        self.loadable = loadable
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched  # (key, shape in the file, shape in the model)
        self.unit_of_key = unit_of_key or {}  # each model tensor -> its load unit
        self.units: dict = {}  # unit -> (tensors the model has, tensors of the file that fit)
        for k, u in self.unit_of_key.items():
            n, fit = self.units.get(u, (0, 0))
            self.units[u] = (n + 1, fit + (k in loadable))

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def fragments(self) -> list[str]:
        """Units of which some tensors fit and others do not (missing or of another shape)."""
        return [u for u, (n, fit) in self.units.items() if 0 < fit < n]

    def partial(self, fragments: bool = False) -> dict:
        """The tensors ``--load-partial`` loads: those of the units that fit whole, and with
        ``fragments=True`` also those of the units that fit in part."""
        keep = set(self.units) if fragments else {u for u, (n, fit) in self.units.items() if fit == n}
        out = OrderedDict((k, v) for k, v in self.loadable.items() if self.unit_of_key[k] in keep)
        out._metadata = getattr(self.loadable, '_metadata', None)
        return out

    def describe_units(self, fragments_loaded: bool = False) -> str:
        lines = []
        for u, (n, fit) in self.units.items():
            if fit == n:
                what = 'loaded'
            elif fit == 0:
                what = 'not in the file (left as initialised)'
            elif fragments_loaded:
                what = 'a fragment, loaded as asked (--load-fragments); the rest left as initialised'
            else:
                what = 'a fragment, left as initialised (--load-fragments loads it)'
            lines.append(f'    {u}: {fit}/{n} tensors fit: {what}')
        return '  per part of the model:\n' + '\n'.join(lines) if lines else ''

    def describe(self, limit: int | None = 10) -> str:
        def block(title: str, items: list) -> str:
            shown = items if limit is None else items[:limit]
            more = '' if limit is None or len(items) <= limit else f'\n    ... and {len(items) - limit} more'
            return f'  {title} ({len(items)}):\n' + '\n'.join(f'    {x}' for x in shown) + more

        parts = []
        if self.missing:
            parts.append(block('missing from the file (left as initialised)', self.missing))
        if self.unexpected:
            parts.append(block('in the file but not in the model', self.unexpected))
        if self.mismatched:
            parts.append(block('shape differs (file vs model)',
                               [f'{k}: {tuple(a)} vs {tuple(b)}' for k, a, b in self.mismatched]))
        return '\n'.join(parts) if parts else '  all tensors match'


def match_state_dict(model: torch.nn.Module, state: dict) -> StateDictReport:
    """Compare ``state`` with ``model.state_dict()`` key by key and shape by shape.

    The loadable tensors carry the model's own state-dict metadata: they have the shapes of
    the model's tensors, so modules that convert old layouts on load (spconv's kernels under
    mmdet3d, keyed on the metadata version) must take them as they are.
    """
    own = model.state_dict()
    loadable, mismatched = OrderedDict(), []
    loadable._metadata = getattr(own, '_metadata', None)
    for k, v in state.items():
        if k in own:
            if tuple(v.shape) == tuple(own[k].shape):
                loadable[k] = v
            else:
                mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    units = load_units(model)
    return StateDictReport(loadable, missing, unexpected, mismatched, {k: unit_of(k, units) for k in own})


_BEVFUSION_MIT_GRID = re.compile(r'(^|\.)vtransform\.(frustum|dx|bx|nx)$')
_MMDET3D_BEVFUSION_PREFIXES = ('img_backbone.', 'img_neck.', 'view_transform.', 'pts_voxel_encoder.',
                               'pts_middle_encoder.', 'fusion_layer.', 'pts_backbone.', 'pts_neck.', 'bbox_head.')


def foreign_layout(state: dict) -> str | None:
    """Why ``state`` must not be loaded into a FULLER model as it is, or None.

    A BEVFusion-MIT checkpoint (recognised by the grid constants its view transform stores,
    ``vtransform.frustum/dx/bx/nx``) carries FULLER's module names, and most of its tensors have
    FULLER's shapes, but BEVFusion-MIT keeps BEV maps as [C, X, Y] where FULLER keeps [C, Y, X], so
    its 2-D BEV kernels (fuser, decoder, heads, the view transform's downsample) are transposed, and
    its sparse kernels are in spconv 1.x's layout: a name-and-shape match would load them silently
    wrong. An mmdet3d ``projects/BEVFusion`` checkpoint has other names and fits nothing.
    """
    grid = sorted(k for k in state if _BEVFUSION_MIT_GRID.search(k))
    if grid:
        return (f'it is a BEVFusion-MIT checkpoint (it holds {grid[0]}): its BEV kernels are in the [C, X, Y] '
                'layout and its sparse kernels in spconv 1.x\'s, so loading it by name and shape would be silently '
                'wrong, and FULLER refuses it. Convert it first: python tools/misc/convert_bevfusion.py <config> '
                '<file> <out.pth> (README, "Start from BEVFusion"). Its camera backbone alone loads as it is: '
                "model.encoders.camera.backbone.init_cfg=dict(type='Pretrained', checkpoint=<file>, "
                "prefix='encoders.camera.backbone.')")
    prefixes = sorted({p for p in _MMDET3D_BEVFUSION_PREFIXES for k in state if k.startswith(p)})
    if len(prefixes) >= 3:
        return (f'its names are mmdet3d projects/BEVFusion\'s ({", ".join(prefixes)}), not FULLER\'s, so none of '
                'its tensors fit; its BEV kernels are in the [C, X, Y] layout as well. Convert it first: python '
                'tools/misc/convert_bevfusion.py <config> <file> <out.pth>. Its camera backbone alone '
                "loads as it is: model.encoders.camera.backbone.init_cfg=dict(type='Pretrained', checkpoint=<file>, "
                "prefix='img_backbone.')")
    return None
