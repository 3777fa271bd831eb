"""Lift-Splat-Shoot view transform: image features -> depth distribution -> BEV."""

import torch
from torch import Tensor, nn

from fuller.registry import MODELS

from .bev_pool import bev_pool
from .geometry import CameraGeometry


@MODELS.register_module()
class LSSViewTransform(nn.Module):
    """Lift image features with a categorical depth distribution and splat them to BEV.

    Args:
        in_channels: channels of the image feature map.
        out_channels: BEV channels (C).
        image_size: (H, W) of the network input images.
        feature_size: (fH, fW) of the image feature map.
        xbound, ybound, zbound: (min, max, step) of the BEV grid, m.
        dbound: (min, max, step) of the depth bins, m.
        downsample: stride of the conv that follows pooling (1 or 2).
        pool_impl: BEV pooling formulation, see :func:`~fuller.models.camera.bev_pool.bev_pool`
            (``'auto'``: by device).
    """

    def __init__(self, in_channels: int, out_channels: int, image_size: tuple, feature_size: tuple,
                 xbound: tuple, ybound: tuple, zbound: tuple, dbound: tuple, downsample: int = 1,
                 pool_impl: str = 'auto') -> None:
        super().__init__()
        if pool_impl not in ('auto', 'indexed', 'sorted', 'scatter'):
            raise ValueError(f"vtransform.pool_impl must be 'auto', 'indexed', 'sorted' or 'scatter', got {pool_impl!r}")
        self.pool_impl = pool_impl
        self.out_channels = out_channels
        self.image_size = tuple(image_size)
        self.feature_size = tuple(feature_size)
        self.bounds = torch.tensor([xbound, ybound, zbound], dtype=torch.float32)
        self.nx = int(round((xbound[1] - xbound[0]) / xbound[2]))
        self.ny = int(round((ybound[1] - ybound[0]) / ybound[2]))
        self.nz = int(round((zbound[1] - zbound[0]) / zbound[2]))
        depths = torch.arange(*dbound, dtype=torch.float32)
        self.num_depth = len(depths)
        fh, fw = self.feature_size
        h, w = self.image_size
        d = depths.view(-1, 1, 1).expand(-1, fh, fw)
        u = torch.linspace(0, w - 1, fw).view(1, 1, fw).expand(self.num_depth, fh, fw)
        v = torch.linspace(0, h - 1, fh).view(1, fh, 1).expand(self.num_depth, fh, fw)
        self.register_buffer('frustum', torch.stack([u, v, d], -1), persistent=False)  # [D, fH, fW, 3]
        self.depthnet = nn.Conv2d(in_channels, self.num_depth + out_channels, 1)
        if downsample == 1:
            self.downsample = nn.Identity()
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(out_channels * self.nz, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(True),
                nn.Conv2d(out_channels, out_channels, 3, stride=downsample, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(True),
            )

    def geometry(self, cams: CameraGeometry) -> Tensor:
        """[B, N, D, fH, fW, 3] augmented-LiDAR coordinates of every frustum point."""
        b, n = cams.img_aug.shape[:2]
        pix = self.frustum  # augmented image pixels
        inv_aug = torch.linalg.inv(cams.img_aug)  # [B, N, 4, 4]
        uv1 = torch.cat([pix[..., :2], torch.zeros_like(pix[..., :1]), torch.ones_like(pix[..., :1])], -1)
        orig = torch.einsum('bnij,dhwj->bndhwi', inv_aug, uv1)  # original pixels
        d = pix[..., 2].expand(b, n, *pix.shape[:3])
        hom = torch.stack([orig[..., 0] * d, orig[..., 1] * d, d, torch.ones_like(d)], -1)
        pts = torch.einsum('bnij,bndhwj->bndhwi', cams.frustum_to_lidar(), hom)
        return pts[..., :3]

    def forward(self, feats: Tensor, cams: CameraGeometry) -> Tensor:
        """Args: feats [B, N, C_in, fH, fW]. Returns: BEV features [B, C, ny', nx']."""
        b, n, c, fh, fw = feats.shape
        x = self.depthnet(feats.flatten(0, 1))
        depth = x[:, : self.num_depth].softmax(1)
        ctx = x[:, self.num_depth:]
        vol = depth.unsqueeze(1) * ctx.unsqueeze(2)  # [BN, C, D, fH, fW]
        vol = vol.view(b, n, self.out_channels, self.num_depth, fh, fw).permute(0, 1, 3, 4, 5, 2)
        geom = self.geometry(cams)
        lo = self.bounds[:, 0].to(geom)
        step = self.bounds[:, 2].to(geom)
        cell = ((geom - lo) / step).floor().long()
        batch_ix = torch.arange(b, device=feats.device).view(b, 1, 1, 1, 1, 1).expand(*cell.shape[:-1], 1)
        coords = torch.cat([cell, batch_ix], -1).view(-1, 4)
        bev = bev_pool(vol.reshape(-1, self.out_channels), coords, b, self.nx, self.ny, self.nz, self.pool_impl)
        return self.downsample(bev)
