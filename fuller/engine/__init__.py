from .checkpoint_hook import SafeCheckpointHook
from .ddp import FullerDistributedDataParallel
from .hooks import BEVVisualizationHook, ProgressBarHook
from .optim_wrapper import CalibratedOptimWrapper

__all__ = ['BEVVisualizationHook', 'CalibratedOptimWrapper', 'FullerDistributedDataParallel', 'ProgressBarHook',
           'SafeCheckpointHook']
