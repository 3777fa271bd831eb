from .det_head import CenterPointDetHead
from .map_head import BEVSegmentationHead, sigmoid_focal_loss
from .transfusion import TransFusionHead
from .transfusion_assign import BBoxBEVL1Cost, HungarianAssigner3D, IoU3DCost, TransFusionBBoxCoder

__all__ = ['CenterPointDetHead', 'BEVSegmentationHead', 'sigmoid_focal_loss', 'TransFusionHead',
           'TransFusionBBoxCoder', 'HungarianAssigner3D', 'BBoxBEVL1Cost', 'IoU3DCost']
