"""A tool's end without a launcher: the objects alive are kept out of the exit's cycle
collections, and what is garbage by then is still finalized (fuller/utils/cli.py)."""

import subprocess
import sys

from fuller.utils.cli import REPO_ROOT

SCRIPT = r'''
import gc, sys
from fuller.utils import finish_distributed, freeze_imports
freeze_imports()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # the imports' objects

class Flushes:
    """Writes its line when finalized; reachable only through a reference cycle."""
    def __init__(self, path):
        self.path, self.me = path, self
    def __del__(self):
        with open(self.path, 'w') as f:
            f.write('finalized')

Flushes(sys.argv[1])  # garbage in a cycle, as a run can leave behind
kept = {'alive': [1, 2, 3]}
finish_distributed()
assert gc.get_count()[0] < 10 and gc.get_freeze_count() > 1000
print('left', kept['alive'], flush=True)
'''


def test_a_tool_s_end_finalizes_its_garbage_and_freezes_the_rest(tmp_path):
    out = tmp_path / 'finalized.txt'
    r = subprocess.run([sys.executable, '-c', SCRIPT, str(out)], capture_output=True, text=True, cwd=REPO_ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'left [1, 2, 3]'
    assert out.read_text() == 'finalized'
