from .checkpoint_hook import SafeCheckpointHook
from .checkpoint_io import (
                            AtomicLocalBackend,
                            CheckpointLoadError,
                            CheckpointMismatchError,
                            extract_state_dict,
                            find_latest_good_checkpoint,
                            load_checkpoint_file,
                            match_state_dict,
)
from .ddp import FullerDistributedDataParallel
from .hooks import BEVVisualizationHook, CurvesHook, ProgressBarHook
from .optim_wrapper import CalibratedAmpOptimWrapper, CalibratedOptimWrapper, GuardedOptimWrapper
from .runner import FullerRunner, reported_as_exit

__all__ = ['AtomicLocalBackend', 'BEVVisualizationHook', 'CalibratedAmpOptimWrapper', 'CalibratedOptimWrapper',
           'CheckpointLoadError', 'CheckpointMismatchError', 'CurvesHook', 'FullerDistributedDataParallel',
           'FullerRunner', 'GuardedOptimWrapper', 'ProgressBarHook', 'SafeCheckpointHook', 'extract_state_dict',
           'find_latest_good_checkpoint', 'load_checkpoint_file', 'match_state_dict', 'reported_as_exit']
