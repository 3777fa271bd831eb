"""One live run per work dir: a lock file with its owner's pid and host.

Two runs started in the same ``--work-dir`` would overwrite each other's checkpoints and logs.
``tools/train.py`` holds ``<work_dir>/.fuller.lock`` while it runs (created atomically with
``O_EXCL``; on rank 0 only under a launcher). A second start finds it and stops with one line
naming the owner. A lock left by a run that died (same host, its pid no longer alive, or alive
but another program) is taken over with a warning; a lock from another host cannot be checked
from here and is refused with the file to remove if that run is gone.
"""

import json
import os
import os.path as osp
import socket
import sys
import time
from contextlib import contextmanager

LOCK_NAME = '.fuller.lock'


class WorkDirInUseError(RuntimeError):
    """The work dir is held by another live run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux ``/proc``), to tell a reused pid from the owner."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(owner: dict) -> bool:
    pid = int(owner.get('pid', -1))
    if pid <= 0 or not _alive(pid):
        return False
    started = owner.get('proc_start')
    return started is None or _start_time(pid) in (None, started)


def _describe(owner: dict) -> str:
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner.get('time', 0)))
    return f"{owner.get('tool', 'a run')} pid {owner.get('pid')} on {owner.get('host')} since {since}"


def acquire(work_dir: str, tool: str = 'train') -> str:
    """Take the work dir's lock; its path. Raises :class:`WorkDirInUseError` if a live run holds it."""
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    me = {'pid': os.getpid(), 'host': socket.gethostname(), 'tool': tool, 'time': time.time(),
          'proc_start': _start_time(os.getpid()), 'argv': sys.argv}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = json.load(f)
            except (OSError, ValueError):
                owner = {}
            if owner.get('host') not in (None, me['host']):
                raise WorkDirInUseError(
                    f'{tool}: work dir {work_dir} is in use by {_describe(owner)} (lock {path}); use another '
                    '--work-dir, or remove the lock if that run is gone') from None
            if owner and _owner_alive(owner):
                raise WorkDirInUseError(
                    f'{tool}: work dir {work_dir} is in use by {_describe(owner)} (lock {path}); wait for it, '
                    'stop it, or use another --work-dir') from None
            print(f'{tool}: taking over the lock of a run that is gone ({_describe(owner) if owner else path})',
                  flush=True)
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, 'w') as f:
            json.dump(me, f)
        return path
    raise WorkDirInUseError(f'{tool}: could not take the lock {path} (another run keeps taking it)')


def release(path: str) -> None:
    """Remove the lock if this process still owns it."""
    try:
        with open(path) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return
    if owner.get('pid') == os.getpid() and owner.get('host') == socket.gethostname():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


@contextmanager
def work_dir_lock(work_dir: str, tool: str = 'train'):
    """Hold ``work_dir``'s lock for the block (rank 0 only under a launcher: ``RANK``, else
    ``SLURM_PROCID``, unset or 0).
    A second live run gets a :class:`SystemExit` with one line naming the owner."""
    if os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) != '0':
        yield None
        return
    try:
        path = acquire(work_dir, tool)
    except WorkDirInUseError as e:
        raise SystemExit(str(e)) from None
    try:
        yield path
    finally:
        release(path)
