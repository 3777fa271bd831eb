"""Command-line flags the tools share, and the clean end of a launched run (no package imports)."""

import argparse
import os
import re

from mmengine.config import DictAction

# The repository root (the checkout of an editable install): tools/, configs/, docs/.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ['REPO_ROOT', 'ConfigOptionsAction', 'add_checkpoint_args', 'add_info_file_args', 'finish_distributed',
           'parse_launcher_args', 'refuse_docs_without_publish']


class ConfigOptionsAction(DictAction):
    """mmengine's ``--cfg-options`` parsing, except that a single value keeps its spaces
    (``work_dir='/data/my runs/x'``: mmengine's ``DictAction`` deletes every space, so the run
    would use ``/data/myruns/x``). Lists and tuples are parsed as mmengine does, spaces around
    their commas and brackets ignored; a space inside one of their elements, or an option
    without ``=``, is refused with the reason."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for kv in values or []:
            if '=' not in kv:
                parser.error(f'{option_string}: {kv!r} is not key=value')
            key, val = kv.split('=', 1)
            bare = val.strip().strip('\'"')
            if not re.search(r'[\[\](),]', bare):
                options[key] = self._parse_int_float_bool(bare)
                continue
            if ' ' in re.sub(r'\s*([\[\](),])\s*', r'\1', bare.strip()):
                parser.error(f'{option_string}: {key}={val!r}: a list or tuple element with a space is not supported '
                             '(mmengine would delete the space); set it in a config file instead')
            options[key] = self._parse_iterable(bare)
        setattr(namespace, self.dest, options)


def parse_launcher_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add the flags every launched tool shares (``--cfg-options``, ``--launcher``,
    ``--local-rank``), parse, and export ``LOCAL_RANK`` for torch.distributed."""
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='override config keys, e.g. a.b=1 (a single value keeps its spaces)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """The flags that say how a checkpoint given to a tool is loaded (see ``FullerRunner``)."""
    parser.add_argument('--load-partial', action='store_true',
                        help='load the parts of the model (encoders.camera.backbone, fuser, heads.det, ...) that '
                             'the checkpoint fits whole, and list the rest in the log (default: a checkpoint that '
                             'does not fit exactly is an error)')
    parser.add_argument('--load-fragments', action='store_true',
                        help='--load-partial that also loads the tensors of parts that fit only in part (a '
                             'BatchNorm without its conv, ...), which are otherwise left as initialised')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load the checkpoint with the full unpickler, e.g. one of plain mmengine/mmdet3d '
                             'training; it can run code, so only for files from a trusted source (to take only '
                             'the weights of any file safely: tools/misc/extract_weights.py)')


def add_info_file_args(parser: argparse.ArgumentParser) -> None:
    """The flag that lets a tool read info files with the full unpickler (``trust_info_files``)."""
    parser.add_argument('--trust-info-files', action='store_true',
                        help='read the info .pkl files with the full unpickler; it can run code the file carries, so '
                             'only for files from a trusted source that hold more than plain data and numpy arrays '
                             '(default: such a file is refused, naming what it holds)')


def freeze_imports() -> None:
    """Move the objects the imports made so far (torch, mmengine, mmdet, mmdet3d: about 460,000
    tracked by the cycle collector) out of the collector's walks (``gc.freeze``), for a tool to
    call once its imports are done. Each full collection walked all of them (0.26 s on a 2-core
    Zen 5 EPYC), and a demo training run triggers several (4 in 300 iterations, 1.2 s with the
    final one). They live as long as the process does anyway; a cycle among them that became
    garbage later would only keep its memory."""
    import gc

    gc.freeze()


def finish_distributed() -> None:
    """End a tool's run: under a launcher every rank waits for the others (rank 0 may still be
    evaluating or writing files), the group is torn down, and the process ends here.

    The last step exits without the interpreter's teardown: under load, a gloo rank that
    finished everything could still abort in C++ destructors at exit ("terminate called without
    an active exception", exit -6), which fails the launcher after all results were written.
    Logs and standard streams are flushed first.

    Without a process group the interpreter exits as usual (``atexit`` handlers, finalizers,
    flushing), but its cycle collector no longer walks the objects that are alive now: they are
    moved out of its reach (``gc.freeze``) after one last collection finalizes today's garbage.
    Python's shutdown collects several times over every object, which took 1.3 s after the
    imports alone and 1.5-1.9 s after a demo test run, on a 2-core Zen 5 EPYC. Reference
    counting still frees them at exit; only objects kept alive by reference cycles alone are
    left to the operating system, which Python's shutdown does not promise to finalize either.
    """
    import gc
    import logging
    import sys

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    gc.collect()  # what is garbage now is still finalized, as the interpreter's exit would
    gc.freeze()


def refuse_docs_without_publish(out: str, publish: bool, tool: str) -> None:
    """A trial run must not rewrite the project's published tables: ``out`` inside the
    repository's ``docs/`` needs ``--publish``."""
    docs = os.path.join(REPO_ROOT, 'docs')
    path = os.path.abspath(out)
    if not publish and (path == docs or path.startswith(docs + os.sep)):
        raise SystemExit(f'{tool}: --out {out} is inside docs/, the project\'s published results; add --publish to '
                         'rewrite them (default output: work_dirs/)')
