"""BEVFusion's depth-guided view transform (DepthLSS): the LiDAR points, drawn as a depth image in
each camera, enter the depth net next to the image features.

As BEVFusion-MIT's ``DepthLSSTransform`` (``mmdet3d/models/vtransforms/depth_lss.py`` over
``BaseDepthTransform`` in ``base.py``):

* **The depth image.** Each point (in the augmented LiDAR frame the pipeline produces) is taken
  back to the original LiDAR frame (inverse LiDAR augmentation), into each camera's image plane
  (``cam2img @ lidar2cam``; its depth clamped to [1e-5, 1e5] for the division) and through the
  image augmentation; where it lands inside the network image, at the pixel its coordinates
  truncate to, the image holds its camera depth. Everywhere else it is 0. One channel, at the
  network image's full resolution.
* **Its convs** (``dtransform``): 1x1 conv to 8, 5x5 stride-4 conv to 32, 5x5 stride-2 conv to
  64, each with BN and ReLU: the depth image at the feature map's stride 8.
* **The depth net** (``depthnet``): the 64 depth channels concatenated *before* the image
  features, two 3x3 conv-BN-ReLU at the image-feature width, a 1x1 conv to depth bins + context.

The lift, the pooling, BEVFusion's 3-conv downsample and the precision (the depth image, its convs,
the depth net and the pooling in fp32 under mixed precision) are :class:`LSSViewTransform`'s.
Parameter names are BEVFusion's (``dtransform.{0,1,3,4,6,7}``, ``depthnet.{0,1,3,4,6}``).
Without points (the LiDAR input dropped at inference) the depth image is empty.
"""

import torch
from torch import Tensor, nn

from fuller.registry import MODELS

from .lss import LSSViewTransform
from .rig import CameraRig


@MODELS.register_module()
class DepthLSSViewTransform(LSSViewTransform):
    """Args: those of :class:`LSSViewTransform`; the depth image adds ``depth_channels`` (64,
    BEVFusion's) to the depth net's input. ``image_size`` must be 8x ``feature_size``: the
    depth convs have stride 8."""

    uses_points = True

    def __init__(self, in_channels: int, out_channels: int, image_size: tuple, feature_size: tuple,
                 xbound: tuple, ybound: tuple, zbound: tuple, dbound: tuple, downsample: int = 1,
                 pool_impl: str = 'auto', cell_index: str = 'floor', depth_channels: int = 64,
                 depth_loss_weight: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, image_size, feature_size, xbound, ybound, zbound, dbound,
                         downsample=downsample, pool_impl=pool_impl, cell_index=cell_index,
                         depth_loss_weight=depth_loss_weight)
        (h, w), (fh, fw) = self.image_size, self.feature_size
        if (-(-h // 8), -(-w // 8)) != (fh, fw):
            raise ValueError(f'DepthLSSViewTransform: the depth convs take the {h}x{w} image to '
                             f'{-(-h // 8)}x{-(-w // 8)}, but the image features are {fh}x{fw} '
                             f'(encoders.camera.vtransform.feature_size: use feature stride 8)')
        self.dtransform = nn.Sequential(
            nn.Conv2d(1, 8, 1), nn.BatchNorm2d(8), nn.ReLU(True),
            nn.Conv2d(8, 32, 5, stride=4, padding=2), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.Conv2d(32, depth_channels, 5, stride=2, padding=2), nn.BatchNorm2d(depth_channels), nn.ReLU(True))
        self.depthnet = nn.Sequential(
            nn.Conv2d(in_channels + depth_channels, in_channels, 3, padding=1), nn.BatchNorm2d(in_channels),
            nn.ReLU(True),
            nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.BatchNorm2d(in_channels), nn.ReLU(True),
            nn.Conv2d(in_channels, self.num_depth + out_channels, 1))

    def depth_and_context(self, feats: Tensor, cams: CameraRig, points: list[Tensor] | None) -> Tensor:
        d = self.dtransform(self.depth_image(points, cams).flatten(0, 1).to(feats.dtype))
        return self.depthnet(torch.cat([d, feats.flatten(0, 1)], 1))
