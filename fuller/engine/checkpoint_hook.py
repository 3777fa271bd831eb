"""Checkpoints that load under ``torch.load(weights_only=True)``.

torch>=2.6 loads with ``weights_only=True`` by default, which refuses mmengine's own
checkpoints: their ``message_hub`` holds :class:`~mmengine.logging.HistoryBuffer` objects
and numpy values. Rather than allow-listing classes (or turning the safe loader off for
every file, trusted or not), FULLER writes checkpoints made only of tensors and plain
Python containers: this hook turns those objects into tagged plain data before saving and
back after loading. Every checkpoint is then loaded with the safe unpickler, so loading a
file from an untrusted source can never execute code.
"""

import os
import os.path as osp
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import HistoryBuffer

from fuller.registry import HOOKS
from fuller.utils.io import write_bytes_atomic

from .checkpoint_io import _WRITER

_HB_TAG = '__fuller_history_buffer__'
_ND_TAG = '__fuller_ndarray__'


def to_plain(obj: Any) -> Any:
    """Recursively convert ``obj`` to tensors and plain Python data.

    Args:
        obj: Any nesting of dicts, lists, tuples, numpy values, tensors and
            :class:`HistoryBuffer`.

    Returns:
        The same structure with :class:`HistoryBuffer` and numpy arrays replaced by tagged
        dicts, numpy scalars by Python scalars and dict subclasses other than ``OrderedDict``
        by dicts.
    """
    if isinstance(obj, HistoryBuffer):
        return {
            _HB_TAG: {
                'log': [float(v) for v in obj._log_history],
                'count': [float(v) for v in obj._count_history],
                'max_length': int(obj.max_length),
            }
        }
    if isinstance(obj, np.ndarray):
        return {_ND_TAG: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        # a dict subclass the safe loader does not know (a ConfigDict: a config's nested metainfo in
        # the dataset_meta) is saved as a dict
        kind = type(obj) if type(obj) in (dict, OrderedDict) else dict
        return kind((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj: Any) -> Any:
    """Invert :func:`to_plain`."""
    if isinstance(obj, dict):
        if set(obj) == {_HB_TAG}:
            data = obj[_HB_TAG]
            buf = HistoryBuffer(max_length=data['max_length'])
            buf._log_history = np.asarray(data['log'])
            buf._count_history = np.asarray(data['count'])
            return buf
        if set(obj) == {_ND_TAG}:
            return obj[_ND_TAG].numpy()
        return type(obj)((k, from_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(from_plain(v) for v in obj)
    return obj


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Make saved checkpoints loadable with ``weights_only=True`` (see module docstring).

    Runs with the highest priority on save so that other hooks see plain data last, and on
    load before mmengine restores the message hub.
    """

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('message_hub', 'meta'):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('message_hub', 'meta'):
            if key in checkpoint:
                checkpoint[key] = from_plain(checkpoint[key])


@HOOKS.register_module()
class FullerCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` whose ``last_checkpoint`` pointer names a checkpoint only
    once it is on disk, also when its file backend writes in the background
    (``backend_args=dict(backend='atomic_local', background=True)``, the default runtime's).

    mmengine writes the pointer as soon as the backend has taken the file; with the file still
    in flight this hook puts the previous pointer back and has the pointer written behind the
    file, by the same writer (not at all if the file fails: then the pointer keeps naming the
    previous checkpoint, as with a file written in the foreground). Training ends (``after_train``,
    after the last checkpoint is handed over) once every file and pointer is on disk, also
    under mmengine's own ``Runner``.
    """

    def after_train(self, runner) -> None:
        super().after_train(runner)
        _WRITER.wait()

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        before = _read_text(pointer) if is_main_process() else None
        super()._save_checkpoint_with_step(runner, step, meta)
        if not is_main_process() or not _WRITER.pending():
            return
        after = _read_text(pointer)
        if after == before:
            return
        if before is None:
            os.remove(pointer)
        else:
            _write_text(pointer, before)
        _WRITER.then(_write_text, pointer, after)


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_text(path: str, text: str) -> None:
    """The pointer written whole or not at all, unflushed as mmengine writes it."""
    write_bytes_atomic(path, text.encode(), fsync=False)
