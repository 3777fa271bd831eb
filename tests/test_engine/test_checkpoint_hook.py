import io

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from fuller.engine.checkpoint_hook import from_plain, to_plain


def test_plain_round_trip_loads_with_weights_only():
    buf = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        buf.update(v)
    state = {'log_scalars': {'train/loss': buf}, 'runtime_info': {'iter': np.int64(3), 'arr': np.arange(4.0),
                                                                    'name': 'x', 'f': np.float32(0.5)}}
    f = io.BytesIO()
    torch.save(to_plain(state), f)
    f.seek(0)
    loaded = from_plain(torch.load(f, weights_only=True))
    restored = loaded['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.current() == 4.0 and restored.mean() == buf.mean()
    np.testing.assert_array_equal(loaded['runtime_info']['arr'], np.arange(4.0))
    assert loaded['runtime_info']['iter'] == 3


def test_raw_mmengine_objects_are_refused_by_safe_loader():
    f = io.BytesIO()
    torch.save({'buf': HistoryBuffer()}, f)
    f.seek(0)
    try:
        torch.load(f, weights_only=True)
    except Exception as e:  # the unsafe global is rejected, no code runs
        assert 'HistoryBuffer' in str(e)
    else:
        raise AssertionError('weights_only load accepted an arbitrary class')


def test_a_full_disk_during_a_save_is_one_line_naming_the_file_and_the_previous_checkpoint_survives(
        demo_root, tmp_path, monkeypatch):
    """Training saves iter_1.pth, then the disk fills while iter_2.pth is written: the run ends in
    one line naming iter_2.pth and the disk, iter_1.pth and the last_checkpoint pointer are as
    they were, and no temporary file is left."""
    import errno
    import os
    import os.path as osp

    import pytest

    from fuller.engine import FullerRunner, checkpoint_io, reported_as_exit
    from fuller.testing import tiny_config

    cfg = tiny_config(demo_root, str(tmp_path / 'work'))
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f'/proc/self/fd/{fd}').rsplit('/', 1)[-1].startswith('.iter_2.pth'):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint_io.os, 'fsync', fsync)
    runner = FullerRunner.from_cfg(cfg)
    with pytest.raises(SystemExit) as e:
        with reported_as_exit(cfg, 'train'):
            runner.train()
    msg = str(e.value)
    work = tmp_path / 'work'
    assert '\n' not in msg and f'could not write {osp.join(str(work), "iter_2.pth")}: the disk is full' in msg
    assert 'the previous checkpoint' in msg and '--resume' in msg
    assert sorted(os.listdir(work)) == sorted(f for f in os.listdir(work) if not f.startswith('.iter_'))
    assert not (work / 'iter_2.pth').exists() and (work / 'iter_1.pth').stat().st_size > 0
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_1.pth')
    assert checkpoint_io.checkpoint_loads(str(work / 'iter_1.pth'))
