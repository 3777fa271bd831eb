from .camera import *  # noqa: F401,F403
from .data_preprocessor import MultiModalDataPreprocessor
from .detectors import FullerNet
from .fusers import ConvFuser
from .heads import BEVSegmentationHead, CenterPointDetHead
from .lidar import LidarEncoder, SparseBEVEncoder

__all__ = ['MultiModalDataPreprocessor', 'FullerNet', 'ConvFuser', 'BEVSegmentationHead', 'CenterPointDetHead',
           'LidarEncoder', 'SparseBEVEncoder']
