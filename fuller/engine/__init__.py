from .checkpoint_hook import SafeCheckpointHook
from .optim_wrapper import CalibratedOptimWrapper

__all__ = ['SafeCheckpointHook', 'CalibratedOptimWrapper']
