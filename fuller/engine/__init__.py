from .checkpoint_hook import SafeCheckpointHook
from .checkpoint_io import AtomicLocalBackend, find_latest_good_checkpoint
from .ddp import FullerDistributedDataParallel
from .hooks import BEVVisualizationHook, ProgressBarHook
from .optim_wrapper import CalibratedAmpOptimWrapper, CalibratedOptimWrapper, GuardedOptimWrapper

__all__ = ['AtomicLocalBackend', 'BEVVisualizationHook', 'CalibratedAmpOptimWrapper', 'CalibratedOptimWrapper',
           'FullerDistributedDataParallel', 'GuardedOptimWrapper', 'ProgressBarHook', 'SafeCheckpointHook',
           'find_latest_good_checkpoint']
