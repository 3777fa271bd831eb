from .bev_pool import bev_pool, bev_pool_scatter
from .encoder import CameraEncoder
from .geometry import CameraGeometry
from .lss import LSSViewTransform

__all__ = ['bev_pool', 'bev_pool_scatter', 'CameraEncoder', 'CameraGeometry', 'LSSViewTransform']
