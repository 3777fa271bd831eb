from .bev_pool import bev_pool, bev_pool_indexed, bev_pool_scatter, bev_pool_sorted
from .depth_lss import DepthLSSViewTransform
from .encoder import CameraEncoder
from .lss import LSSViewTransform
from .lss_fpn import GeneralizedLSSFPN
from .rig import CameraRig

__all__ = ['bev_pool', 'bev_pool_indexed', 'bev_pool_scatter', 'bev_pool_sorted', 'CameraEncoder', 'CameraRig',
           'DepthLSSViewTransform',
           'GeneralizedLSSFPN', 'LSSViewTransform']
