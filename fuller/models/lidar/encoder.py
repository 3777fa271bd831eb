"""LiDAR branch: voxelization -> voxel feature encoder -> sparse 3D encoder -> BEV."""

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from fuller.registry import MODELS


@MODELS.register_module()
class LidarEncoder(BaseModule):
    """Point clouds to a BEV feature map.

    Args:
        voxelize: arguments of :class:`mmcv.ops.Voxelization` (``voxel_size``,
            ``point_cloud_range``, ``max_num_points``, ``max_voxels``).
        voxel_encoder: voxel feature encoder config (e.g. mmdet3d ``HardSimpleVFE``).
        backbone: sparse encoder config (:class:`SparseBEVEncoder`).
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=FILE, prefix=...)``.
    """

    def __init__(self, voxelize: dict, voxel_encoder: dict, backbone: dict, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from mmcv.ops import Voxelization  # compiled op, imported lazily

        self.voxelizer = Voxelization(**voxelize)
        self.voxel_encoder = MODELS.build(voxel_encoder)
        self.backbone = MODELS.build(backbone)
        self.out_channels = self.backbone.out_channels

    @torch.no_grad()
    def voxelize(self, points: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Hard voxelization of each cloud; coordinates get the batch index prepended."""
        voxels, coors, nums = [], [], []
        for i, p in enumerate(points):
            v, c, n = self.voxelizer(p)
            voxels.append(v)
            coors.append(nn.functional.pad(c, (1, 0), value=i))
            nums.append(n)
        return torch.cat(voxels), torch.cat(coors), torch.cat(nums)

    def forward(self, points: list[Tensor]) -> Tensor:
        """Args: points, B clouds of [P_i, C]. Returns: [B, C_out, ny, nx]."""
        voxels, coors, nums = self.voxelize(points)
        feats = self.voxel_encoder(voxels, nums, coors)
        return self.backbone(feats, coors, len(points))
