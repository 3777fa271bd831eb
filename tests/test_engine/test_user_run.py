"""A user's short run from the command line: a quiet terminal, curves, shareable checkpoints,
and a test run that leaves the training files alone."""

import os
import os.path as osp
import stat
import subprocess
import sys

import pytest

from fuller.testing import REPO_ROOT, tiny_calibrated_config


@pytest.fixture(scope='module')
def run(demo_root, tmp_path_factory):
    d = tmp_path_factory.mktemp('userrun')
    cfg = tiny_calibrated_config(demo_root, str(d / 'work'))
    path = d / 'tiny.py'
    cfg.dump(str(path))
    env = {k: v for k, v in os.environ.items() if k != 'FULLER_SHOW_WARNINGS'}
    proc = subprocess.run(['bash', '-c', f'umask 022 && exec {sys.executable} tools/train.py {path}'],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path, d / 'work', proc


def test_console_is_readable_and_the_log_file_complete(run):
    _, work, proc = run
    console = proc.stdout + proc.stderr
    log = open(next(work.glob('*/*.log'))).read()
    assert '\x1b[' not in console  # no colour codes when the output is not a terminal
    assert '\r' not in proc.stderr  # no progress bar written into a pipe/file
    for noise in ('FutureWarning', 'Failed to search registry', 'DeprecationWarning'):
        assert noise not in console, noise
    assert 'Config:' not in console and 'Config:' in log  # the config dump goes to the file only
    train_lines = [x for x in proc.stdout.splitlines() if 'Iter(train)' in x]
    assert train_lines and not any('calib/' in x for x in train_lines)
    assert max(len(x) for x in train_lines) < 400
    assert 'calib/grad_norm_det' in log and 'calib/cos' in log  # diagnostics stay in the log file
    assert 'tensorboard --logdir' in proc.stdout
    assert 'Iter(val)' not in console and 'Iter(val)' not in log  # training does not validate


def test_run_leaves_curves(run):
    _, work, _ = run
    names = sorted(p.name for p in (work / 'curves').glob('*.png'))
    for expected in ('losses.png', 'lr.png', 'task_gradients.png', 'task_cosine.png', 'rule_weights.png',
                     'modality_ratio.png'):
        assert expected in names, names
    assert all((work / 'curves' / n).stat().st_size > 10_000 for n in names)
    out = work / 'replot'
    proc = subprocess.run([sys.executable, 'tools/analysis/plot_curves.py', str(work), '--out', str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob('*.png')) == names
    empty = work.parent / 'empty'
    empty.mkdir()
    proc = subprocess.run([sys.executable, 'tools/analysis/plot_curves.py', str(empty)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode != 0 and 'no training scalars' in proc.stderr


def test_checkpoints_are_readable_by_the_group(run):
    _, work, _ = run
    mode = stat.S_IMODE((work / 'iter_3.pth').stat().st_mode)
    assert mode == 0o644, oct(mode)


def test_test_tool_keeps_the_training_config_copy(run):
    path, work, _ = run
    copy = work / 'tiny.py'
    before = copy.read_text()
    proc = subprocess.run([sys.executable, 'tools/test.py', str(path), str(work / 'iter_3.pth')],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert copy.read_text() == before
    dumped = list(work.glob('*/tiny.py'))
    assert dumped and 'iter_3.pth' in dumped[-1].read_text()  # the test run's own copy, beside its log


def test_checkpoint_from_another_config_is_refused_unless_partial(run, tmp_path):
    path, work, _ = run
    text = path.read_text()
    other = tmp_path / 'camera_only.py'
    # a camera-only model: no LiDAR encoder, no fuser, the decoder reads the camera BEV
    from mmengine.config import Config
    cfg = Config.fromfile(str(path))
    cfg.model.encoders.lidar = None
    cfg.model.fuser = None
    cfg.model.decoder.backbone.in_channels = cfg.model.encoders.camera.vtransform.out_channels
    cfg.work_dir = str(tmp_path / 'w')
    cfg.dump(str(other))
    assert text  # the training config is unchanged
    proc = subprocess.run([sys.executable, 'tools/test.py', str(other), str(work / 'iter_3.pth'), '--work-dir',
                           str(tmp_path / 'w')], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode != 0
    assert 'iter_3.pth does not fit the model of' in proc.stderr and 'encoders.lidar' in proc.stderr
    assert '--load-partial' in proc.stderr
    assert not osp.exists(tmp_path / 'w' / 'metrics.json')
    proc = subprocess.run([sys.executable, 'tools/test.py', str(other), str(work / 'iter_3.pth'), '--work-dir',
                           str(tmp_path / 'w'), '--load-partial'], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = open(sorted((tmp_path / 'w').glob('*/*.log'))[-1]).read()  # the second (partial) run's
    assert 'Partial load of' in log and 'encoders.lidar' in log and 'decoder.backbone' in log


@pytest.mark.slow
def test_wandb_offline_from_the_command_line(run, tmp_path):
    path, _, _ = run
    work = tmp_path / 'wb'
    proc = subprocess.run([sys.executable, 'tools/train.py', str(path), '--work-dir', str(work), '--wandb',
                           '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=100'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                          env=dict(os.environ, WANDB_SILENT='true'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((work / 'wandb').glob('offline-run-*'))
    assert len(runs) == 1
    records = list(runs[0].glob('run-*.wandb'))
    assert records and records[0].stat().st_size > 1000  # the logged scalars, ready for `wandb sync`
