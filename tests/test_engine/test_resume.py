"""Kill-and-resume gives the same weights; checkpoints survive a kill while saving."""

import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from fuller.engine import AtomicLocalBackend, find_latest_good_checkpoint
from fuller.testing import REPO_ROOT, tiny_config


def _train(cfg_path, work_dir, *extra):
    return subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), str(cfg_path), '--work-dir',
                           str(work_dir), *extra], capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(demo_root, tmp_path):
    cfg = tiny_config(demo_root, str(tmp_path / 'unused'),
                      config=osp.join(REPO_ROOT, 'configs', 'fuller',
                                      'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'))
    cfg.train_cfg.max_iters = 4
    cfg.default_hooks.checkpoint.interval = 2
    cfg.custom_imports.imports.append('fuller.testing')
    cfg.dump(str(tmp_path / 'plain.py'))
    cfg.custom_hooks.append(dict(type='KillAtIterHook', iter=3))
    cfg.dump(str(tmp_path / 'killed.py'))

    ref = _train(tmp_path / 'plain.py', tmp_path / 'ref')
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = _train(tmp_path / 'killed.py', tmp_path / 'run')
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert osp.isfile(tmp_path / 'run' / 'iter_2.pth') and not osp.isfile(tmp_path / 'run' / 'iter_4.pth')
    resumed = _train(tmp_path / 'plain.py', tmp_path / 'run', '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming from' in resumed.stdout and 'iter_2.pth' in resumed.stdout

    a = torch.load(tmp_path / 'ref' / 'iter_4.pth', weights_only=True)
    b = torch.load(tmp_path / 'run' / 'iter_4.pth', weights_only=True)
    assert a['meta']['iter'] == b['meta']['iter'] == 4
    for k, v in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][k], v, rtol=0, atol=1e-6, msg=f'resumed weights differ at {k}')


_KILL_WHILE_SAVING = r'''
import os, signal, sys
import fuller.engine.checkpoint_io as io
def die(fd):
    os.kill(os.getpid(), signal.SIGKILL)  # killed after the bytes are written, before the rename
io.os.fsync = die
io.AtomicLocalBackend().put(b'x' * 10_000_000, sys.argv[1])
'''


def test_kill_while_saving_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / 'iter_2.pth'
    AtomicLocalBackend().put(_ckpt_bytes(tmp_path, 2), str(path))
    proc = subprocess.run([sys.executable, '-c', _KILL_WHILE_SAVING, str(path)], cwd=REPO_ROOT)
    assert proc.returncode == -9
    assert torch.load(path, weights_only=True)['meta']['iter'] == 2  # untouched and loadable
    assert find_latest_good_checkpoint(str(tmp_path)) == str(path)


def test_resume_skips_a_corrupt_latest_checkpoint(tmp_path):
    AtomicLocalBackend().put(_ckpt_bytes(tmp_path, 2), str(tmp_path / 'iter_2.pth'))
    (tmp_path / 'iter_4.pth').write_bytes(_ckpt_bytes(tmp_path, 4)[:1000])  # truncated by a crash elsewhere
    AtomicLocalBackend().put_text(str(tmp_path / 'iter_4.pth'), str(tmp_path / 'last_checkpoint'))
    with pytest.warns(UserWarning, match='iter_4.pth is incomplete or corrupt'):
        assert find_latest_good_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    assert find_latest_good_checkpoint(str(tmp_path / 'nothing')) is None


def _ckpt_bytes(tmp_path, it: int) -> bytes:
    p = tmp_path / f'_tmp_{it}.pth'
    torch.save({'state_dict': {'w': torch.full((1000,), float(it))}, 'meta': {'iter': it}}, p)
    data = p.read_bytes()
    p.unlink()
    return data
