"""One live run per work dir (issue 29: two runs in one --work-dir overwrote each other's checkpoints)."""

import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time

import pytest

from fuller.engine.lock import LOCK_NAME, WorkDirInUseError, acquire, release, work_dir_lock
from fuller.testing import REPO_ROOT

HOLD = """
import sys, time
from fuller.engine.lock import work_dir_lock
with work_dir_lock(sys.argv[1], 'train'):
    print('held', flush=True)
    time.sleep(120)
"""


def test_lock_is_taken_released_and_refused_while_held(tmp_path):
    path = acquire(str(tmp_path), 'train')
    owner = json.loads(open(path).read())
    assert owner['pid'] == os.getpid() and owner['host'] == socket.gethostname()
    with pytest.raises(WorkDirInUseError, match=f'in use by train pid {os.getpid()} on'):
        acquire(str(tmp_path), 'train')
    release(path)
    assert not osp.exists(path)
    with work_dir_lock(str(tmp_path)) as p:
        assert osp.isfile(p)
    assert not osp.exists(p)


def test_a_dead_owners_lock_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({'pid': pid, 'host': socket.gethostname(), 'tool': 'train',
                                                  'time': time.time()}))
    path = acquire(str(tmp_path), 'train')
    assert json.loads(open(path).read())['pid'] == os.getpid()
    assert 'taking over the lock of a run that is gone' in capsys.readouterr().out
    release(path)


def test_another_hosts_lock_is_refused_with_the_file_to_remove(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({'pid': 1, 'host': 'node-7', 'tool': 'train', 'time': 0}))
    with pytest.raises(WorkDirInUseError, match='on node-7 .*remove the lock if that run is gone'):
        acquire(str(tmp_path), 'train')


def test_other_ranks_do_not_lock(tmp_path, monkeypatch):
    monkeypatch.setenv('RANK', '1')
    with work_dir_lock(str(tmp_path)) as p:
        assert p is None and not osp.exists(tmp_path / LOCK_NAME)


def test_two_concurrent_starts_in_one_work_dir(tmp_path):
    """While one run holds the work dir, tools/train.py on it stops at once with one line naming
    the owner, and leaves the owner's lock and files alone."""
    work = tmp_path / 'work'
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(work)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == 'held'
        cfg = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
        proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), cfg, '--work-dir', str(work)],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
        assert proc.returncode != 0
        err = proc.stderr.strip().splitlines()
        assert err[-1].startswith(f'train: work dir {work} is in use by train pid {holder.pid} on'), proc.stderr
        assert 'Traceback' not in proc.stderr
        assert json.loads((work / LOCK_NAME).read_text())['pid'] == holder.pid
        assert sorted(os.listdir(work)) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
