"""Statements of the README that a user relies on without seeing them (issue 29, item 6)."""

import os.path as osp
import re

from fuller.testing import REPO_ROOT

DEMO = osp.join(REPO_ROOT, 'configs', 'fuller')


def _readme() -> str:
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        return f.read()


def test_demo_schedules_do_not_validate_during_training():
    """The demo schedule says training does not validate (tools/test.py evaluates): mmengine
    validates at the last iteration once past val_begin, so val_begin lies beyond any run."""
    from fuller.engine import read_config

    for method in ('fuller', 'naive'):
        cfg = read_config(osp.join(DEMO, f'{method}_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'))
        assert cfg.train_cfg.val_begin > cfg.train_cfg.max_iters * 1000, method


def test_the_readme_counts_the_calibration_diagnostics_of_fullers_step(demo_root, tmp_path):
    """README: 'per-step calibration diagnostics (10 with FULLER's default step ...)'."""
    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from fuller.registry import DATASETS, MODELS
    from fuller.testing import tiny_config

    n = int(re.search(r'calibration diagnostics \((\d+) with FULLER\'s default step', _readme()).group(1))
    main_job = osp.join(DEMO, 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
    cfg = tiny_config(demo_root, str(tmp_path), config=main_job)
    init_default_scope('fuller')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    log = model.train_step(pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]]),
                           build_optim_wrapper(model, cfg.optim_wrapper))
    calib = sorted(k for k in log if k.startswith('calib/'))
    assert len(calib) == n, calib


def test_every_test_the_fault_case_table_names_exists():
    """docs/fault_cases.md (what tools/misc/fault_cases.sh re-runs) names only tests that exist."""
    import subprocess
    import sys

    with open(osp.join(REPO_ROOT, 'docs', 'fault_cases.md')) as f:
        text = f.read()
    ids = sorted(set(re.findall(r'tests/[\w/]+\.py::\w+', text)))
    rows = re.findall(r'^\| (\d+) \|', text, re.M)
    assert len(ids) >= 50 and [int(r) for r in rows] == list(range(1, len(rows) + 1))
    proc = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider', *ids],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    collected = {line.split('[')[0] for line in proc.stdout.splitlines() if '::' in line}
    assert set(ids) <= collected, sorted(set(ids) - collected)
