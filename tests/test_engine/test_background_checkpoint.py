"""Checkpoints written in the background: in order, complete under their names, the
``last_checkpoint`` pointer moved only once its file is on disk, a failed write raised at the
next call (fuller/engine/checkpoint_io.py, checkpoint_hook.py)."""

import errno
import os
import os.path as osp
import threading
from collections import deque
from types import SimpleNamespace

import pytest
from mmengine.fileio import get_file_backend
from mmengine.logging import MessageHub

from fuller.engine import (
    AtomicLocalBackend,
    CheckpointSaveError,
    FullerCheckpointHook,
    checkpoint_io,
    wait_for_checkpoint_writes,
)

BACKGROUND = dict(backend='atomic_local', background=True)


def test_background_puts_land_in_order_and_a_failed_one_raises_at_the_next_call(tmp_path, monkeypatch):
    backend = get_file_backend(str(tmp_path), backend_args=BACKGROUND)
    assert isinstance(backend, AtomicLocalBackend) and backend.background
    path = str(tmp_path / 'iter_1.pth')
    for payload in (b'first', b'second'):
        backend.put(payload, path)
    wait_for_checkpoint_writes()
    assert open(path, 'rb').read() == b'second'

    real_fsync = os.fsync
    monkeypatch.setattr(checkpoint_io.os, 'fsync', lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, 'No space left on device')) if 'iter_2' in os.readlink(f'/proc/self/fd/{fd}')
        else real_fsync(fd))
    backend.put(b'lost', str(tmp_path / 'iter_2.pth'))
    with pytest.raises(CheckpointSaveError, match='iter_2.pth: the disk is full'):
        backend.isfile(path)  # any later call of the backend waits for the file in flight
    assert sorted(os.listdir(tmp_path)) == ['iter_1.pth']  # no temporary file, the first intact
    wait_for_checkpoint_writes()  # the error was raised once


class _Runner:
    """What CheckpointHook._save_checkpoint_with_step uses of a runner."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.message_hub = MessageHub.get_instance(f'background-ckpt-{id(self)}')

    def save_checkpoint(self, out_dir, filename, file_client_args=None, backend_args=None, **kwargs) -> None:
        get_file_backend(out_dir, backend_args=backend_args).put(b'weights', osp.join(out_dir, filename))


def _hook(work_dir: str) -> FullerCheckpointHook:
    hook = FullerCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=3, backend_args=BACKGROUND)
    hook.out_dir, hook.filename_tmpl, hook.keep_ckpt_ids = work_dir, 'iter_{}.pth', deque()
    hook.file_backend = get_file_backend(work_dir, backend_args=BACKGROUND)
    return hook


def test_the_pointer_names_a_checkpoint_only_once_it_is_on_disk(tmp_path, monkeypatch):
    go = threading.Event()
    real_write = AtomicLocalBackend._atomic_write

    def held_write(data, filepath):
        go.wait(30)
        real_write(data, filepath)

    monkeypatch.setattr(AtomicLocalBackend, '_atomic_write', staticmethod(held_write))
    work = str(tmp_path)
    runner, hook = _Runner(work), _hook(work)
    pointer = tmp_path / 'last_checkpoint'

    hook._save_checkpoint_with_step(runner, 1, {})  # the first: no pointer before it
    assert not pointer.exists() and not (tmp_path / 'iter_1.pth').exists()
    go.set()
    wait_for_checkpoint_writes()
    assert pointer.read_text() == osp.join(work, 'iter_1.pth') and (tmp_path / 'iter_1.pth').exists()

    go.clear()
    hook._save_checkpoint_with_step(runner, 2, {})
    assert pointer.read_text() == osp.join(work, 'iter_1.pth') and not (tmp_path / 'iter_2.pth').exists()
    go.set()
    wait_for_checkpoint_writes()
    assert pointer.read_text() == osp.join(work, 'iter_2.pth') and (tmp_path / 'iter_2.pth').read_bytes() == b'weights'

    def failed_write(data, filepath):
        raise CheckpointSaveError(errno.ENOSPC, f'could not write {filepath}: the disk is full')

    monkeypatch.setattr(AtomicLocalBackend, '_atomic_write', staticmethod(failed_write))
    hook._save_checkpoint_with_step(runner, 3, {})
    with pytest.raises(CheckpointSaveError, match='iter_3.pth'):
        wait_for_checkpoint_writes()
    assert pointer.read_text() == osp.join(work, 'iter_2.pth')  # still the last complete one
    assert sorted(os.listdir(tmp_path)) == ['iter_1.pth', 'iter_2.pth', 'last_checkpoint']


def test_training_returns_once_the_last_checkpoint_is_written_and_its_error_is_the_one_raised(monkeypatch):
    from mmengine.runner import Runner

    from fuller.engine import FullerRunner, checkpoint_io

    written = []
    go = threading.Event()

    def slow_write():
        go.wait(30)
        written.append('iter_9.pth')

    def train(self):
        checkpoint_io._WRITER.submit(slow_write)
        threading.Timer(0.2, go.set).start()
        return 'model'

    monkeypatch.setattr(Runner, 'train', train)
    runner = FullerRunner.__new__(FullerRunner)
    assert FullerRunner.train(runner) == 'model' and written == ['iter_9.pth']

    def failing_train(self):
        checkpoint_io._WRITER.submit(lambda: (_ for _ in ()).throw(CheckpointSaveError(errno.EIO, 'disk error')))
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, 'train', failing_train)
    runner.logger = SimpleNamespace(error=lambda msg: written.append(msg))
    with pytest.raises(KeyboardInterrupt):
        FullerRunner.train(runner)
    assert written[-1].startswith('a checkpoint could not be written either')
    wait_for_checkpoint_writes()  # nothing left in flight
