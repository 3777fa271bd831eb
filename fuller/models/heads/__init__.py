from .det_head import CenterPointDetHead
from .map_head import BEVSegmentationHead, sigmoid_focal_loss

__all__ = ['CenterPointDetHead', 'BEVSegmentationHead', 'sigmoid_focal_loss']
