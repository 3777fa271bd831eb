"""Child processes for tests that never outlive their deadline.

A deadlocked collective or launcher must fail its test, not the whole run: ``mp.spawn``
starts non-daemonic workers that the interpreter joins at exit, and ``subprocess.run``
kills only its direct child on a timeout, then waits for the pipe that a launcher's own
children still hold. Both helpers kill everything they started when the deadline passes.
"""

import faulthandler
import os
import signal
import subprocess
import sys
import time

import torch.multiprocessing as mp


def spawn(fn, args: tuple = (), nprocs: int = 2, timeout: float = 600.0) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs)`` with a deadline.

    Workers are daemonic (the interpreter never waits for them at exit); a worker's exception
    is re-raised as ``mp.spawn`` does; after ``timeout`` seconds the workers still running
    print the Python stack of every thread to stderr (where they are stuck), are killed, and a
    :class:`TimeoutError` names them.
    """
    ctx = mp.start_processes(_traced, args=(fn, *args), nprocs=nprocs, join=False, daemon=True,
                             start_method='spawn')
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                alive = [i for i, p in enumerate(ctx.processes) if p.is_alive()]
                for i in alive:  # one at a time: their reports share stderr
                    os.kill(ctx.processes[i].pid, signal.SIGUSR1)
                    time.sleep(1.0)
                raise TimeoutError(f'{fn.__name__}: ranks {alive} of {nprocs} still running after {timeout:g} s '
                                   f'(a collective that not every rank reached?); killed')
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(5)


def _traced(rank: int, fn, *args) -> None:
    """A worker that prints its threads' stacks to stderr on SIGUSR1, and that ends without the
    interpreter's teardown once ``fn`` has returned: gloo's threads can hang or abort in it
    under load (the reason :func:`fuller.utils.finish_distributed` ends launched processes the
    same way). A worker's exception still takes ``mp.spawn``'s path to the parent."""
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    fn(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)`` that kills
    the command's whole process group (a launcher and its workers) when the deadline passes,
    then raises :class:`subprocess.TimeoutExpired` carrying the output so far."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
    finally:
        if proc.poll() is None:  # an interrupt (pytest-timeout) while waiting
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
