"""Fault injection for tests of resuming and robustness."""

import os
import signal

from mmengine.hooks import Hook

from fuller.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """SIGKILL the training process right after iteration ``iter`` (1-based) has finished and
    its hooks (checkpointing included) have run, and the checkpoints handed to the background
    writer are on disk (a kill within the write's fraction of a second loses that checkpoint
    as a kill during a foreground save does: tests/test_engine/test_background_checkpoint.py):
    a pre-emption with no chance to clean up."""

    priority = 'LOWEST'

    def __init__(self, iter: int) -> None:  # noqa: A002 - the config key users write
        self.iter = iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iter:
            from fuller.engine import wait_for_checkpoint_writes

            wait_for_checkpoint_writes()
            os.kill(os.getpid(), signal.SIGKILL)
