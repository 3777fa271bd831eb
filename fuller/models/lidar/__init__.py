from .encoder import LidarEncoder
from .residual_encoder import ResidualSparseEncoder
from .sparse_encoder import SparseBEVEncoder, select_spconv_algo

__all__ = ['LidarEncoder', 'ResidualSparseEncoder', 'SparseBEVEncoder', 'select_spconv_algo']
