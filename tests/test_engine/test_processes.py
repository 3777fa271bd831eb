"""The test helpers that bound child processes: a deadlocked worker or launcher fails its
test within the deadline and leaves no process behind (so the run can end)."""

import os
import subprocess
import sys
import time

import pytest
from torch.multiprocessing import ProcessRaisedException

from fuller.testing import run, spawn


def _hang_or_fail(rank: int, mode: str, pid_dir: str) -> None:
    with open(os.path.join(pid_dir, f'{rank}.pid'), 'w') as f:
        f.write(str(os.getpid()))
    if mode == 'fail' and rank == 1:
        raise RuntimeError('rank 1 failed on purpose')
    if mode != 'ok':
        time.sleep(600)


def _stat(pid) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (state, parent pid, ...); None once gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != 'Z'  # a zombie waiting for its parent is gone too


def _pids(d) -> list[int]:
    return [int(p.read_text()) for p in d.glob('*.pid')]


def _workers() -> list[int]:
    """Live spawned workers of this process (not multiprocessing's resource tracker)."""
    me, out = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        stat = _stat(pid)
        if stat is not None and stat[1] == me and stat[0] != 'Z':
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if b'spawn_main' in f.read():
                    out.append(int(pid))
    return out


def test_spawn_kills_hung_workers_at_the_deadline(tmp_path, capfd):
    t0 = time.monotonic()
    # The deadline exceeds a worker's start (it imports this module, hence fuller.testing and
    # spconv: 20 s and more on a loaded 2-core machine), so that the ranks reach the function.
    with pytest.raises(TimeoutError, match=r'ranks \[0, 1\] of 2 still running after 60 s'):
        spawn(_hang_or_fail, args=('hang', str(tmp_path)), nprocs=2, timeout=60)
    assert time.monotonic() - t0 < 150
    assert not any(_alive(p) for p in _pids(tmp_path))
    assert not _workers()
    err = capfd.readouterr().err
    # Each rank that reached the function said where it was stuck (under load a rank can still be
    # importing at the deadline; it wrote no pid file then, and its dump names the import).
    reached = len(_pids(tmp_path))
    assert reached >= 1 and err.count('in _hang_or_fail') == reached, err


def test_spawn_reraises_a_worker_error_and_stops_the_others(tmp_path):
    with pytest.raises(ProcessRaisedException, match='rank 1 failed on purpose'):
        spawn(_hang_or_fail, args=('fail', str(tmp_path)), nprocs=2, timeout=120)
    time.sleep(1)
    assert len(_pids(tmp_path)) >= 1 and not any(_alive(p) for p in _pids(tmp_path))
    spawn(_hang_or_fail, args=('ok', str(tmp_path)), nprocs=2, timeout=120)  # and a clean run returns


def test_run_kills_the_launcher_and_its_children(tmp_path):
    pid_file = tmp_path / 'child.pid'
    # a launcher (bash) whose child holds the output pipe, as torchrun's workers do
    script = f'{sys.executable} -c "import os,time; open(\'{pid_file}\',\'w\').write(str(os.getpid())); ' \
             f'print(\'started\', flush=True); time.sleep(600)" & wait'
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as err:
        run(['bash', '-c', script], timeout=5)
    assert time.monotonic() - t0 < 30
    assert 'started' in err.value.output
    time.sleep(0.5)
    assert not _alive(int(pid_file.read_text()))
    done = run([sys.executable, '-c', 'import sys; print("out"); print("err", file=sys.stderr); sys.exit(3)'], timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, 'out\n', 'err\n')
