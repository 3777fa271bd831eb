"""FULLER's mmengine Runner: checkpoints that load exactly, CPU launchers, a readable terminal.

:class:`FullerRunner` is mmengine's :class:`~mmengine.runner.Runner` with four changes, all
driven by top-level config keys (set by ``tools/train.py`` / ``tools/test.py`` flags):

- ``load_from`` loads **exactly**: a checkpoint whose tensors do not match the model (missing,
  unexpected or differently shaped keys) is an error naming the file and the keys, unless
  ``load_partial=True`` (``--load-partial``), which loads the parts of the model that fit whole
  (:func:`~fuller.engine.checkpoint_io.load_units`) and lists the rest, fragments included, in the
  log (``load_partial='fragments'``, ``--load-fragments``, loads fragments too). A file none of
  whose tensors fit, or a BEVFusion-MIT/mmdet3d BEVFusion checkpoint (other BEV layout), is an
  error. Files load with ``weights_only=True`` unless ``trust_checkpoint=True``
  (``--trust-checkpoint``), the opt-in for plain mmengine/mmdet3d checkpoints from a trusted
  source (:func:`~fuller.engine.checkpoint_io.load_checkpoint_file`).
- Under a launcher on a machine without CUDA the process group is started with gloo
  (mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and fails there).
- The console shows what a person reads: no environment report or config dump (they go to
  the log file, whose path is printed), no
  per-step calibration diagnostics on the log line (they go to the log file, the scalars
  JSON and TensorBoard), no colour codes when the output is not a terminal, and log lines
  that clear and redraw the progress bar instead of being glued onto it.
- ``tools/test.py`` writes its config copy into its own log folder, not over the training
  config copy in the work dir.
- An iteration-based training loop whose data loader has no worker processes goes from one
  epoch to the next without the 2 s pause mmengine makes there (:class:`EpochLoaderIterator`).
"""

import copy
import logging
import os
import os.path as osp
import re
from contextlib import contextmanager

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.logging.logger import MMFormatter
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop, Runner

from fuller.datasets.info_io import UnsafeInfoFileError
from fuller.datasets.transforms.loading import DataFileError
from fuller.utils.quiet import is_registry_noise

from .checkpoint_io import (
    CheckpointLoadError,
    CheckpointMismatchError,
    CheckpointSaveError,
    foreign_layout,
    load_checkpoint_file,
    match_state_dict,
    wait_for_checkpoint_writes,
)
from .config import explain_registry_error, resolve_config

# Log-line fields that stay in the log file, the scalars JSON and TensorBoard, not on the console:
# the calibration diagnostics, and the per-class metrics (the metrics print their own tables).
_CONSOLE_DROPPED_FIELD = re.compile(r'\s+(calib/\S+|det/(?!mAP:|NDS:)\S+|map/(?!mIoU:)\S+): \S+')
_CONSOLE_DROPPED_MESSAGES = ('Config:\n', 'Hooks will be executed in the following order',
                             'Distributed training is not used', '"FileClient" will be deprecated',
                             '"HardDiskBackend" is the alias')


class _ConsoleFilter(logging.Filter):
    """Keep the console short: drop the environment report, the config dump, the hook table
    and registry notices (all stay in the log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith(_CONSOLE_DROPPED_MESSAGES) or 'System environment:' in msg[:100]
                    or is_registry_noise(msg))


class _ConsoleFormatter(logging.Formatter):
    """Format with ``base`` after stripping the calibration diagnostics from log lines (on a
    copy of the record: the file handler sees the full line)."""

    def __init__(self, base: logging.Formatter) -> None:
        super().__init__()
        self.base = base

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if ('Iter(' in msg or 'Epoch(' in msg) and ('calib/' in msg or 'det/' in msg or 'map/' in msg):
            record = copy.copy(record)
            record.msg, record.args = _CONSOLE_DROPPED_FIELD.sub('', msg), ()
        return self.base.format(record)


class _BarAwareStream:
    """A console stream that clears any tqdm bar before a log line and redraws it after."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, s: str) -> int:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.stream):
            return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def make_console_readable(logger: logging.Logger) -> None:
    """Apply the console rules of :class:`FullerRunner` to ``logger``'s stream handlers."""
    for h in logger.handlers:
        if not isinstance(h, logging.StreamHandler) or isinstance(h, logging.FileHandler):
            continue
        if any(isinstance(f, _ConsoleFilter) for f in h.filters):
            continue
        h.addFilter(_ConsoleFilter())
        tty = bool(getattr(h.stream, 'isatty', lambda: False)())
        base = h.formatter if tty else MMFormatter(color=False, datefmt='%m/%d %H:%M:%S')
        h.setFormatter(_ConsoleFormatter(base))
        h.setStream(_BarAwareStream(h.stream))


def _init_cpu_process_group(launcher: str, dist_cfg: dict) -> None:
    """Start torch.distributed with gloo from the launcher's environment (no CUDA calls)."""
    if launcher != 'pytorch':
        raise RuntimeError(f'launcher={launcher!r} on a machine without CUDA: only the pytorch launcher '
                           '(tools/dist_train.sh, torchrun) is supported on CPU')
    backend = dist_cfg.get('backend', 'gloo')
    if backend != 'gloo':
        logging.getLogger('fuller').info(f'no CUDA device: env_cfg.dist_cfg.backend={backend!r} replaced by gloo')
    kwargs = {}
    if 'timeout' in dist_cfg:
        from datetime import timedelta
        kwargs['timeout'] = timedelta(seconds=dist_cfg['timeout'])
    dist.init_process_group(backend='gloo', init_method='env://', **kwargs)


class _TextOnceConfig(Config):
    """A config whose ``pretty_text`` is formatted once: mmengine's formats the whole config
    with yapf on every call (1.2 s for the demo config on a 2-core Xeon), and the runner asks for
    it at start-up five times and at every checkpoint save. The runner's config is not changed
    after the runner is built."""

    @property
    def pretty_text(self) -> str:
        text = self.__dict__.get('_fuller_pretty_text')
        if text is None:
            text = super().pretty_text
            super(Config, self).__setattr__('_fuller_pretty_text', text)
        return text


class EpochLoaderIterator:
    """Endless iteration over an epoch-based data loader for :class:`IterBasedTrainLoop`: at the
    end of an epoch the sampler is told the next epoch and the loader starts again, as mmengine's
    ``_InfiniteDataloaderIterator`` does, without its ``time.sleep(2)`` ("prevent possible deadlock
    during epoch transition", of worker processes) and its warning. :class:`FullerRunner` uses it
    for loaders without worker processes, which have nothing to deadlock: the demo main job (192
    samples, batch 2, 900 iterations) crosses 9 epoch ends, 18 s of pauses in its 3.5 minutes.
    The batches are mmengine's, in the same order.

    Args:
        dataloader: the epoch-based loader.
        iterator: its iterator already started (by mmengine's iterator, which the loop builds):
            taken over, since starting another draws a seed from torch's global generator and
            would change the run's random numbers.
    """

    def __init__(self, dataloader, iterator=None) -> None:
        self._dataloader = dataloader
        self._iterator = iter(dataloader) if iterator is None else iterator
        self._epoch = 0

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._iterator)
        except StopIteration:
            self._epoch += 1
            batch_sampler = getattr(self._dataloader, 'batch_sampler', None)
            for sampler in (getattr(self._dataloader, 'sampler', None), getattr(batch_sampler, 'sampler', None)):
                if hasattr(sampler, 'set_epoch'):
                    sampler.set_epoch(self._epoch)
                    break
            self._iterator = iter(self._dataloader)
            return next(self._iterator)


class FullerRunner(Runner):
    """mmengine ``Runner`` with exact checkpoint loading, CPU launchers and a quiet console
    (see the module docstring). Built with :meth:`from_cfg` like mmengine's."""

    def __init__(self, *args, **kwargs) -> None:
        cfg = kwargs.get('cfg')
        if type(cfg) is Config:
            text_once = _TextOnceConfig.__new__(_TextOnceConfig)
            object.__getattribute__(text_once, '__dict__').update(object.__getattribute__(cfg, '__dict__'))
            kwargs['cfg'] = text_once
        super().__init__(*args, **kwargs)
        log_file = next((h.baseFilename for h in self.logger.handlers if isinstance(h, logging.FileHandler)), None)
        self.logger.info(f'work dir: {self.work_dir} | processes: {self.world_size} | log with the config and the '
                         f'environment: {log_file}')

    @classmethod
    def from_cfg(cls, cfg) -> 'FullerRunner':
        """mmengine's ``from_cfg`` after :func:`~fuller.engine.config.resolve_config` (the
        config's geometry and metainfo handed to the datasets and the model)."""
        return super().from_cfg(resolve_config(cfg))

    def train(self):
        """mmengine's training, returning once the last checkpoint is on disk (a background
        :class:`~fuller.engine.checkpoint_io.AtomicLocalBackend` writes them while training
        goes on). When training fails, the file in flight is still finished, and the training
        error is the one raised."""
        try:
            model = super().train()
        except BaseException:
            try:
                wait_for_checkpoint_writes()
            except Exception as e:  # noqa: BLE001 - the training error is the one to report
                self.logger.error(f'a checkpoint could not be written either: {e}')
            raise
        wait_for_checkpoint_writes()
        return model

    def build_train_loop(self, loop):
        loop = super().build_train_loop(loop)
        if isinstance(loop, IterBasedTrainLoop) and getattr(loop.dataloader, 'num_workers', 1) == 0:
            mm = loop.dataloader_iterator
            loop.dataloader_iterator = EpochLoaderIterator(loop.dataloader, getattr(mm, '_iterator', None))
        return loop

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not dist.is_initialized() and not torch.cuda.is_available():
            _init_cpu_process_group(self.launcher, dict(env_cfg.get('dist_cfg', {})))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and not torch.cuda.is_available():
            # mmengine passes device_ids=[LOCAL_RANK], which DDP refuses for a CPU module.
            model_wrapper_cfg = dict(model_wrapper_cfg or dict(
                type='MMDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False)))
            model_wrapper_cfg['device_ids'] = None
        return super().wrap_model(model_wrapper_cfg, model)

    def build_logger(self, log_level='INFO', log_file=None, **kwargs) -> MMLogger:
        logger = super().build_logger(log_level, log_file, **kwargs)
        make_console_readable(logger)
        return logger

    def dump_config(self) -> None:
        if self.cfg.get('test_config_in_log_dir'):
            # A test run keeps its config beside its own log, not over the training copy.
            name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
            self.cfg.dump(osp.join(self._log_dir, name))
        else:
            super().dump_config()

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list = [(r'^module\.', '')]) -> dict:  # noqa: B006 - mmengine's signature
        """Load ``filename`` into the model: exactly, unless the config says ``load_partial``.

        Raises:
            CheckpointMismatchError: tensors do not match and ``load_partial`` is off.
        """
        partial = self.cfg.get('load_partial', False)  # False, True, or 'fragments' (--load-fragments)
        if partial not in (False, True, 'fragments'):
            raise ValueError(f"load_partial must be False, True or 'fragments', not {partial!r}")
        checkpoint = load_checkpoint_file(filename, trusted=bool(self.cfg.get('trust_checkpoint', False)),
                                          map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state = checkpoint.get('state_dict', checkpoint)
        for pattern, repl in revise_keys:
            state = {re.sub(pattern, repl, k): v for k, v in state.items()}
        where = self.cfg.filename or 'this config'
        foreign = foreign_layout(state)
        if foreign:
            raise CheckpointMismatchError(f'{filename}: {foreign}')
        report = match_state_dict(model, state)
        if not report.loadable:
            raise CheckpointMismatchError(f'no tensor of {filename} fits the model of {where} (another model, or '
                                          f'other names):\n{report.describe()}')
        if not report.exact and not partial:
            raise CheckpointMismatchError(
                f'{filename} does not fit the model of {where}:\n{report.describe()}\n'
                'Pass --load-partial (load_partial=True) to load the parts of the model that fit whole.')
        to_load = report.loadable if report.exact else report.partial(fragments=partial == 'fragments')
        if not to_load:
            raise CheckpointMismatchError(
                f'no part of the model of {where} fits {filename} whole, only fragments:\n'
                f'{report.describe_units()}\nPass --load-fragments to load them anyway.')
        model.load_state_dict(to_load, strict=False)
        self._has_loaded = True
        if report.exact:
            self.logger.info(f'Loaded {len(report.loadable)} tensors from {filename} (exact match)')
        else:
            self.logger.warning(
                f'Partial load of {filename} (--load-partial): {len(to_load)} tensors loaded.\n'
                f'{report.describe_units(fragments_loaded=partial == "fragments")}\n'
                f'  tensors skipped:\n{report.describe(limit=None)}')
        return checkpoint


# mmengine's builders re-raise a constructor's error prefixed with the class and its file.
_BUILD_PREFIX = re.compile(r"^(class `\w+` in [\w./-]+\.py: )+")
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _raised_by_fuller(err: BaseException) -> bool:
    """Whether ``err`` (or the error it was raised from) was raised by a line of FULLER's code: its
    deliberate checks, whose messages name the file, key or path."""
    for e in (err, err.__cause__, err.__context__):
        tb = getattr(e, '__traceback__', None)
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and osp.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + osp.sep):
            return True
    return False


@contextmanager
def reported_as_exit(cfg, tool: str):
    """Turn the errors a user causes into ``SystemExit`` with one line naming the file, config key
    or path: a checkpoint or info file that cannot be read or does not fit, a checkpoint that cannot
    be written (disk full: the previous one is kept), a type no registry has,
    a missing or corrupt data file, and FULLER's own checks of configs and inputs (``ValueError``,
    ``KeyError``, ``TypeError``, ``FileNotFoundError`` raised by its code). Other errors keep their
    traceback, and ``FULLER_DEBUG=1`` keeps it for all."""
    debug = os.environ.get('FULLER_DEBUG', '') not in ('', '0')
    hint = ' (FULLER_DEBUG=1 shows the traceback)'
    try:
        yield
    except (CheckpointLoadError, CheckpointMismatchError, CheckpointSaveError, UnsafeInfoFileError,
            DataFileError) as e:
        if debug:
            raise
        raise SystemExit(f'{tool}: {e}') from None
    except (KeyError, ValueError, TypeError, FileNotFoundError) as e:
        if debug:
            raise
        msg = explain_registry_error(cfg, e) if isinstance(e, KeyError) and cfg is not None else None
        if msg is None:
            if not _raised_by_fuller(e):
                raise
            text = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
            msg = _BUILD_PREFIX.sub('', str(text)) + hint
        raise SystemExit(f'{tool}: {msg}') from None
