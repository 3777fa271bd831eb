"""The ablation and benchmark tools run end to end on tiny settings and write their reports."""

import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
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
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert '| naive | 1 |' in text and '| fuller | 1 |' in text and 'hand-written text' in text
    summary = json.loads((tmp_path / 'results' / 'ablation' / 'results.json').read_text())['summary']
    assert len(summary['fuller']['mIoU']) == 1 and 0 <= summary['fuller']['mIoU'][0] <= 1
    assert summary['fuller']['cam_lidar_ratio_reaching'][0] == pytest.approx(1.0, abs=1e-3)
    for png in ('det_loss', 'map_loss', 'task_grad_cos', 'cam_lidar_ratio'):
        assert (tmp_path / 'results' / 'ablation' / f'{png}.png').stat().st_size > 10_000
    # A second call reuses the finished runs.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=ENV, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count('done, reused') == 2


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
        'train': ['train', '--config', cfg, '--batch-size', '1', '--points', '2000', '--warmup', '0', '--iters', '1',
                  '--dtypes', 'fp32'],
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


def test_paired_difference_statistics():
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    from ablate import comparison_lines, paired_difference

    # Every seed better by 2-4 points: the smallest p the 3 seeds allow (2/8), an interval above 0.
    res = paired_difference({0: 0.30, 1: 0.25, 2: 0.40}, {0: 0.27, 1: 0.23, 2: 0.36, 3: 0.5})
    assert res['n'] == 3 and res['mean'] == pytest.approx(0.03)
    assert res['p'] == pytest.approx(0.25) and 0.0199 <= res['ci95'][0] <= res['ci95'][1] <= 0.0401
    # Differences of both signs: p = 1 for a zero mean.
    assert paired_difference({0: 0.3, 1: 0.2}, {0: 0.2, 1: 0.3})['p'] == pytest.approx(1.0)
    assert paired_difference({0: 0.3}, {0: 0.2}) is None
    runs = {v: [{'seed': s, 'metrics': {'det/mAP': m + 0.01 * s, 'map/mIoU': m}} for s in range(3)]
            for v, m in (('fuller', 0.4), ('naive', 0.3))}
    rows, out = comparison_lines(runs)
    assert out['fuller-naive/mIoU']['mean'] == pytest.approx(0.1)
    # With inter-only present, FULLER is also compared with it: the intra calibration's own effect.
    runs['inter_only'] = [{'seed': s, 'metrics': {'det/mAP': 0.35, 'map/mIoU': 0.38}} for s in range(3)]
    _, out = comparison_lines(runs)
    assert out['fuller-inter_only/mIoU']['mean'] == pytest.approx(0.02)
    assert 'inter_only-naive/mAP' in out and 'naive-inter_only/mAP' not in out
    assert any(r.startswith('| fuller − naive | mAP | 3 | +10.0 |') for r in rows)
    # Runs composed with --with fragments compare within their fragments only.
    frag = {f'{v}+{x}': [{'seed': s, 'metrics': {'det/mAP': m, 'map/mIoU': m}} for s in range(2)]
            for v, x, m in (('fuller', 'sgd', 0.5), ('naive', 'sgd', 0.2), ('naive', 'demo-450it', 0.4))}
    _, out = comparison_lines(frag)
    assert set(out) == {'fuller+sgd-naive+sgd/mAP', 'fuller+sgd-naive+sgd/mIoU'}
    assert out['fuller+sgd-naive+sgd/mAP']['mean'] == pytest.approx(0.3)


def test_table_cells_show_a_spread_only_across_seeds():
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    from ablate import _fmt

    assert _fmt([0.415]) == '41.5'  # one seed: no "± 0.0" that reads as a measured spread
    assert _fmt([0.40, 0.42, None]) == '41.0 ± 1.4'
    assert _fmt([None]) == '–'


def test_conflict_stats_summarise_the_logged_gradient_diagnostics():
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    from ablate import conflict_stats

    s = conflict_stats({'calib/cos': np.array([0.1, -0.2, np.nan, 0.3]),
                        'calib/grad_norm_det': np.array([0.02, 0.08, 0.05]),
                        'calib/grad_norm_map': np.array([0.002, 0.002, 0.0])})  # a zero norm is skipped
    assert s['cos_mean'] == pytest.approx(0.2 / 3) and s['conflict_frac'] == pytest.approx(1 / 3)
    assert s['det_map_norm_ratio'] == pytest.approx(20.0)  # geometric mean of 10 and 40
    assert 'cam_lidar_ratio_reaching' not in s and conflict_stats({}) == {}


def test_report_header_names_the_command_with_its_fragments(tmp_path):
    """A study composed with --with reports the command that reproduces it: the variants by their
    file names and the fragments after --with (not the '<variant>+<fragment>' run names)."""
    sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
    from ablate import write_report

    frag = 'configs/ablation/schedules/demo-450it.py'
    runs = {f'{v}+demo-450it': [{'seed': s, 'metrics': {'det/mAP': 0.3, 'map/mIoU': 0.4}, 'scalars': {}, 'info': {}}
                                for s in (0, 1)] for v in ('naive', 'fuller')}
    configs = [str(tmp_path / f'{v}+demo-450it.py') for v in ('naive', 'fuller')]
    out = tmp_path / 'study.md'
    write_report(runs, str(out), configs, [0, 1], [], extra=[frag])
    text = out.read_text()
    assert f'`python tools/ablate.py --variants naive fuller --with {frag} --seeds 0 1`' in text
    assert '| naive+demo-450it | 2 |' in text and '| fuller+demo-450it − naive+demo-450it | mAP | 2 |' in text
