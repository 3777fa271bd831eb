from .checkpoint_hook import SafeCheckpointHook
from .hooks import BEVVisualizationHook, ProgressBarHook
from .optim_wrapper import CalibratedOptimWrapper

__all__ = ['BEVVisualizationHook', 'CalibratedOptimWrapper', 'ProgressBarHook', 'SafeCheckpointHook']
