"""Every tool filters the same third-party start-up warnings (spconv's FutureWarnings and the
like): none reaches a user's terminal, from any entry point (issue 29, item 6)."""

import os
import os.path as osp
import subprocess
import sys

import pytest

from fuller.testing import REPO_ROOT

TOOLS = ['tools/train.py', 'tools/test.py', 'tools/ablate.py', 'tools/benchmark.py', 'tools/create_data.py',
         'tools/create_demo_data.py', 'tools/analysis/param_count.py', 'tools/analysis/plot_curves.py',
         'tools/misc/convert_bevfusion.py',
         'tools/misc/extract_weights.py']


@pytest.mark.parametrize('tool', TOOLS)
def test_no_third_party_warning_at_start_up(tool):
    env = {k: v for k, v in os.environ.items() if k != 'FULLER_SHOW_WARNINGS'}
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, tool), '--help'], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'Warning' not in proc.stderr, proc.stderr[-2000:]
