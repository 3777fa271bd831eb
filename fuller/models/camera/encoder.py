"""Camera branch: image backbone -> neck -> view transform to BEV."""

from mmengine.model import BaseModule
from torch import Tensor

from fuller.registry import MODELS

from .rig import CameraRig


@MODELS.register_module()
class CameraEncoder(BaseModule):
    """Multi-view images to a BEV feature map.

    Args:
        backbone: image backbone config (e.g. ``mmdet.ResNet``, ``mmdet.SwinTransformer``).
        neck: neck config (e.g. ``mmdet.FPN``); its first output level is lifted.
        vtransform: view transform config (:class:`LSSViewTransform`, :class:`DepthLSSViewTransform`).
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=FILE)`` for a
            whole camera branch (a backbone's own ``init_cfg`` loads ImageNet weights).
    """

    def __init__(self, backbone: dict, neck: dict, vtransform: dict, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.vtransform = MODELS.build(vtransform)
        self.out_channels = self.vtransform.out_channels

    def forward(self, imgs: Tensor, cams: CameraRig, points: list[Tensor] | None = None,
                aux: dict[str, Tensor] | None = None) -> Tensor:
        """Args: imgs [B, N, 3, H, W] normalized; ``points`` (augmented LiDAR frame) for a
        depth-guided view transform (:class:`DepthLSSViewTransform`) or depth supervision;
        ``aux``: receives the view transform's auxiliary losses (its depth loss). Returns:
        [B, C, ny, nx]."""
        b, n = imgs.shape[:2]
        feats = self.neck(self.backbone(imgs.flatten(0, 1)))
        f = feats[0] if isinstance(feats, (list, tuple)) else feats
        return self.vtransform(f.view(b, n, *f.shape[1:]), cams, points, aux)
