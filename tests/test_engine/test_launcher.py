"""The real launchers users run: tools/dist_train.sh and tools/dist_test.sh with 2 CPU processes."""

import json
import os
import os.path as osp
import sys

import pytest

from fuller.testing import REPO_ROOT, free_port, run, tiny_calibrated_config


@pytest.mark.slow
def test_dist_train_then_dist_test_with_two_cpu_processes(demo_root, tmp_path):
    cfg = tiny_calibrated_config(demo_root, str(tmp_path / 'work'))
    path = tmp_path / 'tiny.py'
    cfg.dump(str(path))
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')
    work = tmp_path / 'work'
    train = run(['bash', osp.join(REPO_ROOT, 'tools', 'dist_train.sh'), str(path), '2', '--work-dir', str(work)],
                timeout=600, cwd=REPO_ROOT, env=env)
    if train.returncode:
        pytest.fail(f'dist_train.sh failed:\n{train.stdout[-4000:]}\n{train.stderr[-8000:]}', pytrace=False)
    log = open(next(work.glob('*/*.log'))).read()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'Iter(train) [3/3]' in log
    ckpt = work / 'iter_3.pth'
    assert ckpt.is_file()
    env['PORT'] = str(free_port())
    test = run(['bash', osp.join(REPO_ROOT, 'tools', 'dist_test.sh'), str(path), str(ckpt), '2', '--work-dir',
                str(work)], timeout=600, cwd=REPO_ROOT, env=env)
    if test.returncode:
        pytest.fail(f'dist_test.sh failed:\n{test.stdout[-4000:]}\n{test.stderr[-8000:]}', pytrace=False)
    assert test.stdout.count('metrics written to') == 1  # rank 0 only
    assert test.stdout.count('3D detection (nuScenes devkit)') == 1
    metrics = json.loads((work / 'metrics.json').read_text())['metrics']
    assert 'det/mAP' in metrics and 'map/mIoU' in metrics
