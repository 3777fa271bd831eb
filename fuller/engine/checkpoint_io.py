"""Checkpoint files that survive a kill, and finding the newest good one to resume from.

:class:`AtomicLocalBackend` (file backend ``'atomic_local'``) writes every file to a
temporary sibling, flushes it to disk and renames it over the target (``os.replace`` is
atomic on POSIX), so a process killed while saving leaves the previous checkpoint and the
previous ``last_checkpoint`` pointer intact. The default runtime config selects it for the
checkpoint hook.
"""

import glob
import os
import os.path as osp
import re
import tempfile
import warnings

import torch
from mmengine.fileio import LocalBackend, register_backend


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """Local file backend whose writes are atomic (temp file + fsync + rename)."""

    @staticmethod
    def _atomic_write(data: bytes, filepath: str) -> None:
        filepath = str(filepath)
        d = osp.dirname(osp.abspath(filepath))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=d)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise

    def put(self, obj: bytes, filepath) -> None:
        self._atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self._atomic_write(obj.encode(encoding), filepath)


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
