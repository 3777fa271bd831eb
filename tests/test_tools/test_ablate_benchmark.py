"""The ablation and benchmark tools run end to end on tiny settings and write their reports."""

import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from fuller.testing import REPO_ROOT, tiny_config

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def _tiny_base(demo_root, tmp_path) -> str:
    cfg = tiny_config(demo_root, str(tmp_path / 'unused'))
    path = tmp_path / 'tiny_base.py'
    cfg.dump(str(path))
    return str(path)


@pytest.mark.slow
def test_ablate_runs_trains_evaluates_and_reports(demo_root, tmp_path):
    base = _tiny_base(demo_root, tmp_path)
    notes = tmp_path / 'notes.md'
    notes.write_text('## Analysis\nhand-written text')
    out = tmp_path / 'results' / 'ablation.md'
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'ablate.py'), '--base', base, '--variants', 'naive', 'fuller',
           '--seeds', '0',
           '--work-dir', str(tmp_path / 'runs'), '--out', str(out), '--notes', str(notes)]
    proc = subprocess.run([*cmd, '--no-drop'], capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert '| naive | 1 |' in text and '| fuller | 1 |' in text and 'hand-written text' in text
    summary = json.loads((tmp_path / 'results' / 'ablation' / 'results.json').read_text())['summary']
    assert len(summary['fuller']['mIoU']) == 1 and 0 <= summary['fuller']['mIoU'][0] <= 1
    assert summary['fuller']['cam_lidar_ratio_reaching'][0] == pytest.approx(1.0, abs=1e-3)
    for png in ('det_loss', 'map_loss', 'task_grad_cos', 'cam_lidar_ratio'):
        assert (tmp_path / 'results' / 'ablation' / f'{png}.png').stat().st_size > 10_000
    assert 'Modality reliance' not in text
    # A second call reuses the finished runs and runs only their missing evaluations: naive's
    # with each sensor dropped (fuller's are skipped here for time, by leaving it out), and
    # naive's own evaluation as if it had been cut off (its metrics.json gone).
    (tmp_path / 'runs' / 'naive' / 'seed0' / 'metrics.json').unlink()
    del cmd[cmd.index('fuller')]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count('trained, its evaluation did not finish: evaluating') == 1
    assert 'training' not in proc.stdout and osp.isfile(tmp_path / 'runs' / 'naive' / 'seed0' / 'metrics.json')
    assert proc.stdout.count('with the camera dropped') == 1 and proc.stdout.count('with the lidar dropped') == 1
    for sensor in ('camera', 'lidar'):
        assert json.loads((tmp_path / 'runs' / 'naive' / 'seed0' / f'metrics_drop-{sensor}.json').read_text()
                          )['drop_modality'] == sensor
    reliance = json.loads((tmp_path / 'results' / 'ablation' / 'results.json').read_text())['reliance']
    assert len(reliance['naive']['mIoU_drop_camera']) == 1 and len(reliance['naive']['mAP_drop_lidar']) == 1
    assert '| naive | 1 |' in out.read_text() and 'Modality reliance' in out.read_text()
    # Every finished run is in the study's archive (next to the report); on a machine without the
    # run folders (a fresh checkout: another work dir) the study is reported from it, nothing
    # trained, the same rows.
    before = out.read_text()
    assert (tmp_path / 'results' / 'ablation' / 'runs' / 'naive' / 'seed0.json').is_file()
    cmd[cmd.index('--work-dir') + 1] = str(tmp_path / 'fresh')
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'reused from the archive' in proc.stdout and 'training' not in proc.stdout, proc.stdout
    row = next(ln for ln in before.splitlines() if ln.startswith('| naive | 1 |'))
    assert row in out.read_text()
    assert json.loads((tmp_path / 'results' / 'ablation' / 'results.json').read_text())['reliance'] == reliance
    # A record says what its run was trained with; one of another config is not reused (here,
    # reporting only, there is then nothing to report).
    record_file = tmp_path / 'results' / 'ablation' / 'runs' / 'naive' / 'seed0.json'
    record = json.loads(record_file.read_text())
    assert len(record['info']['config_digest']) == 16 and record['info']['pretrained'] == {}
    record['info']['config_digest'] = '0' * 16
    record_file.write_text(json.dumps(record))
    cmd[cmd.index('--work-dir') + 1] = str(tmp_path / 'fresh2')
    proc = subprocess.run([*cmd, '--report-only'], capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=900)
    assert proc.returncode != 0 and 'no finished runs' in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_benchmark_subcommands_write_tables(demo_root, tmp_path):
    cfg = _tiny_base(demo_root, tmp_path)
    bench = [sys.executable, osp.join(REPO_ROOT, 'tools', 'benchmark.py')]
    runs = {
        'step': ['step', '--config', cfg, '--batch-size', '1', '--warmup', '0', '--iters', '1', '--methods', 'fuller',
                 'upgrad'],
        'bevpool': ['bevpool', '--depth-bins', '8', '--feat-h', '8', '--feat-w', '22', '--channels', '8',
                    '--warmup', '0', '--iters', '1'],
        'vtransform': ['vtransform', '--depth-bins', '8', '--feat-h', '8', '--feat-w', '22', '--channels', '8',
                       '--warmup', '0', '--iters', '1'],
        'data': ['data', '--config', cfg, '--warmup', '0', '--iters', '2'],
        'train': ['train', '--config', cfg, '--batch-size', '1', '--points', 'real', '--warmup', '0', '--iters', '1',
                  '--dtypes', 'fp32'],
        'modules': ['modules', '--config', cfg, '--modules', 'encoders.lidar.backbone', 'heads.det', '--points', '2000',
                    '--warmup', '0', '--iters', '1'],
        # bf16 as training runs it: the forward under autocast, the backward outside (the view
        # transform's CSR backward fails under autocast)
        'modules_bf16': ['modules', '--config', cfg, '--modules', 'encoders.camera.vtransform', 'heads.map', '--points',
                         '2000', '--warmup', '0', '--iters', '1', '--dtype', 'bf16', '--name', 'modules_bf16'],
    }
    for name, args in runs.items():
        proc = subprocess.run([*bench, *args, '--out', str(tmp_path / 'bench')], capture_output=True, text=True,
                              cwd=REPO_ROOT, env=ENV, timeout=600)
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        res = json.loads((tmp_path / 'bench' / f'{name}.json').read_text())
        assert res['machine']['torch'] and res['rows'], name
        assert (tmp_path / 'bench' / f'{name}.md').read_text().count('|') > 10
    step = json.loads((tmp_path / 'bench' / 'step.json').read_text())
    assert [r[0] for r in step['rows']][:5] == ['sum', 'fuller', 'upgrad', 'param-level pcgrad',
                                                'torchjd mtl_backward + UPGrad']
    assert step['rows'][-1][0].startswith('fuller + sync=global') and step['rows'][-1][3] > 0
    pool = json.loads((tmp_path / 'bench' / 'bevpool.json').read_text())
    assert pool['params']['max_abs_diff'] < 1e-3
    vt = json.loads((tmp_path / 'bench' / 'vtransform.json').read_text())
    assert vt['params']['max_abs_diff'] < 1e-3 and len(vt['rows']) == 4
    assert all(r[5] > 0 for r in vt['rows'])  # a peak memory for every path
    train = json.loads((tmp_path / 'bench' / 'train.json').read_text())  # the samples' own points
    assert train['params']['points_per_sample'] == 'real' and train['params']['voxels_per_sample'] > 100
    assert 'Training throughput on real samples' in (tmp_path / 'bench' / 'train.md').read_text()
    mods = json.loads((tmp_path / 'bench' / 'modules.json').read_text())
    assert [r[:2] for r in mods['rows']] == [['encoders.lidar.backbone', 'SparseBEVEncoder'],
                                             ['heads.det', 'CenterPointDetHead']]
    assert all(r[2] > 0 and r[4] > 0 and r[5] >= 0 for r in mods['rows'])
    assert mods['params']['points_per_sample'] == 2000 and 100 < mods['params']['voxels_per_sample'] <= 2000
    mods16 = json.loads((tmp_path / 'bench' / 'modules_bf16.json').read_text())
    assert mods16['params']['precision'] == 'bf16' and mods['params']['precision'] == 'fp32'
    assert [r[0] for r in mods16['rows']] == ['encoders.camera.vtransform', 'heads.map']
    if mods16['rows'][0][-2] != 'n/a':  # the bf16 peak (2x the fp32 one where the CPU has bf16 units)
        assert mods16['rows'][0][-2] >= mods['rows'][0][-2]
    assert 'bf16: the forward under autocast' in (tmp_path / 'bench' / 'modules_bf16.md').read_text()
    # every compute table says how far it is from the device's limit (issue 28, item 3)
    for name in ('step', 'bevpool', 'vtransform', 'train', 'modules', 'modules_bf16'):
        res = json.loads((tmp_path / 'bench' / f'{name}.json').read_text())
        assert res['header'][-4:] == ['GFLOP/step', 'GFLOP/s', 'peak GFLOP/s', '% of peak'], name
        for r in res['rows']:
            gflop, rate, peak, pct = r[-4:]
            assert gflop > 0 and rate > 0, (name, r)
            if peak != 'n/a':
                assert abs(float(pct) - 100 * rate / peak) < 0.1 + 0.01 * float(pct), (name, r)
        assert 'Peak:' in (tmp_path / 'bench' / f'{name}.md').read_text(), name
    # the LiDAR backbone is sparse convolutions: counted from their active sites, not by torch
    assert mods['rows'][0][-4] > 0


def test_points_argument_is_a_count_or_real():
    import argparse

    from fuller.analysis.benchmarks.common import points_arg

    assert points_arg('35000') == 35000 and points_arg('real') == 'real'
    for bad in ('0', '-5', 'many'):
        with pytest.raises(argparse.ArgumentTypeError, match='positive number of points or'):
            points_arg(bad)


def test_train_benchmark_refuses_fp16_without_cuda():
    import argparse

    from fuller.analysis.benchmarks.train import bench_train

    with pytest.raises(SystemExit, match='--dtypes fp16 needs a CUDA device'):
        bench_train(argparse.Namespace(device='cpu', dtypes=['fp32', 'fp16'], pool_impls=None))


def test_modules_benchmark_names_a_part_it_cannot_time(demo_root, tmp_path):
    """A container (the decoder's ModuleDict) or a name not in the model stops before any timing,
    with one line naming it and the model's parts (decoder.backbone, ...)."""
    cfg = _tiny_base(demo_root, tmp_path)
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'benchmark.py'), 'modules', '--config', cfg,
                           '--modules', 'decoder', 'heads.det', '--out', str(tmp_path / 'bench')],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=300)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert "['decoder'] of --modules" in proc.stderr and "'decoder.backbone'" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / 'bench').exists()


def test_trial_runs_do_not_rewrite_the_published_tables(tmp_path):
    """--out defaults to work_dirs/; a path in docs/ is refused without --publish (before any work)."""
    for tool, args in (('ablate.py', ['--report-only', '--variants', 'naive']), ('benchmark.py', ['bevpool'])):
        out = osp.join(REPO_ROOT, 'docs', 'results' if tool == 'ablate.py' else 'benchmarks',
                       'trial.md' if tool == 'ablate.py' else '')
        proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', tool), *args, '--out', out],
                              capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=300)
        assert proc.returncode != 0 and 'add --publish' in proc.stderr, proc.stderr[-2000:]
        assert 'Traceback' not in proc.stderr
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'ablate.py'), '--help'],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert 'default: <work-dir>/report.md' in proc.stdout.replace('\n', ' ').replace('  ', ' ') or \
        '<work-dir>/report.md' in proc.stdout


def test_data_benchmark_times_a_stage_on_the_real_keyframe(real_keyframe, tmp_path):
    """benchmark.py data --keyframe: a scratch root from the real keyframe (infos and GT database), the
    LiDAR-only stage's pipeline timed on it, and one A6000's consumption in BEVFusion's stage 1:
    20 epochs x 4.5 x 28,130 CBGS samples in 25 h x 8 GPUs (mit-han-lab/bevfusion issue #279)."""
    from fuller.analysis.benchmarks.data import gpu_consumption

    stage1 = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_l_voxel0075_8x4-20e_nuscenes.py')
    assert gpu_consumption(stage1) == pytest.approx(20 * 4.5 * 28130 / (200 * 3600))
    assert gpu_consumption('configs/fuller/naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py') is None
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'benchmark.py'), 'data', '--keyframe',
                           real_keyframe, '--config', stage1, '--warmup', '0', '--iters', '2', '--out', str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((tmp_path / 'data.json').read_text())['rows'][0]
    header = json.loads((tmp_path / 'data.json').read_text())['header']
    r = dict(zip(header, row))
    assert r['samples in split'] == 1 and r['CBGS'] and r['GT-paste'] and not r['cameras']
    assert r['points/sample'] > 30000 and r['boxes/sample'] > 40  # the keyframe's 34,688 points in range
    assert r['workers per GPU'] == pytest.approx(r['GPU consumes samples/s'] / r['samples/s/worker'])
