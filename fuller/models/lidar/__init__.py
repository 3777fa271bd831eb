from .encoder import LidarEncoder
from .sparse_encoder import SparseBEVEncoder

__all__ = ['LidarEncoder', 'SparseBEVEncoder']
