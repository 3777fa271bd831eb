"""tools/gpu_check.sh: its CPU dry run (the same stages at tiny sizes) runs end to end, so the
GPU check is ready whenever a GPU is lent (issue 28, item 4)."""

import json
import os.path as osp
import subprocess

import pytest

from fuller.analysis.gpu_check import NUSCENES_FULLER, _stages
from fuller.testing import REPO_ROOT

STAGES = ['stack', 'tests', 'demo_train_naive', 'demo_train_fuller', 'nuscenes_train', 'vtransform', 'ddp_global']


def test_gpu_stages_measure_what_the_issue_asks(tmp_path):
    stages = {name: (cmd, limit) for name, cmd, limit in _stages('python', str(tmp_path), '/data', False,
                                                                  str(tmp_path))}
    assert list(stages) == STAGES
    assert sum(limit for _, limit in stages.values()) >= 480  # each has a limit; the budget caps the sum
    nus = stages['nuscenes_train'][0]
    assert nus[nus.index('--config') + 1].endswith(NUSCENES_FULLER)
    assert nus[nus.index('--batch-size') + 1] == '4'  # BEVFusion's samples per GPU (8x4)
    for name in ('demo_train_naive', 'demo_train_fuller', 'nuscenes_train'):
        cmd = stages[name][0]
        assert cmd[cmd.index('--dtypes') + 1:cmd.index('--dtypes') + 3] == ['fp32', 'bf16'], name
        assert cmd[cmd.index('--device') + 1] == 'cuda', name
    assert nus[nus.index('--dtypes') + 3] == 'fp16'  # the nuScenes schedules' own precision (BEVFusion's)
    ddp = stages['ddp_global'][0]
    assert ddp[ddp.index('--nproc_per_node') + 1] == '1' and '--launcher' in ddp


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    proc = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run', '--out',
                           str(tmp_path / 'out'), '--scratch', str(tmp_path / 'scratch')],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / 'out' / 'gpu_check.json').read_text())
    assert summary['dry_run'] is True
    assert [s['stage'] for s in summary['stages']] == ['data', *STAGES]
    assert all(s['status'] == 'ok' for s in summary['stages']), summary['stages']
    stack = summary['stages'][1]['result']
    assert 'mmcv_ops: ok' in stack and 'spconv: ok' in stack and 'fuller_import: ok' in stack
    for table in ('gpu_demo_train_naive', 'gpu_demo_train_fuller', 'gpu_nuscenes_train', 'gpu_vtransform'):
        res = json.loads((tmp_path / 'out' / f'{table}.json').read_text())
        assert res['rows'] and res['header'][-1] == '% of peak', table
    assert '4/4' in summary['stages'][-1]['result']  # the DDP run trained its 4 iterations
    assert (tmp_path / 'out' / 'gpu_check.md').read_text().startswith('# GPU check (CPU dry run')


def test_gpu_check_refuses_docs_without_publish():
    proc = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run', '--out',
                           osp.join(REPO_ROOT, 'docs', 'benchmarks')], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode != 0 and '--publish' in proc.stderr
