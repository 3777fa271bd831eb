"""Lift-Splat-Shoot view transform: image features -> depth distribution -> BEV."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fuller.registry import MODELS
from fuller.utils.grid import bound_cells

from .bev_pool import _to_bev, bev_pool
from .depth_pool import FrustumMapping, depth_weighted_pool
from .rig import CameraRig


def full_precision(x: Tensor) -> Tensor:
    """``x`` in fp32 where it is in a half type (an autocast output), else as it is (fp32, fp64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


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
        pool_impl: ``'auto'``/``'csr'`` (default): depth-weighted pooling without the lifted
            frustum tensor (:mod:`~fuller.models.camera.depth_pool`); ``'indexed'``,
            ``'sorted'``, ``'scatter'``: materialise the frustum ([points, C]) and pool it with
            :func:`~fuller.models.camera.bev_pool.bev_pool` (the reference of the tests).
        cell_index: how a frustum point's coordinate becomes a cell index: ``'floor'`` (default;
            a point below a grid's lower bound is outside it) or ``'trunc'``, BEVFusion's
            ``((geom - (bx - dx / 2)) / dx).long()``, rounding toward zero, so points up to one
            cell below each lower bound land in cell 0 (at BEVFusion's bounds, with one 20 m z
            cell from -10 m, every frustum point with z in (-30, -10) m).
        depth_loss_weight: explicit depth supervision from the LiDAR, as BEVDepth's
            (``BaseBEVDepth.get_depth_loss``): in training, each feature cell's depth distribution
            is scored against the one-hot bin of the nearest keyframe LiDAR return that projects
            into it (binary cross-entropy over the bins, averaged over the cells that have a
            return, times this weight; :meth:`depth_loss`). The model then reads the camera
            alone at inference. 0 (default, BEVFusion's): the depth is learned from the task
            losses only.

    Precision: under mixed precision the lift and the pooling run in fp32 with autocast off (the
    depth net on fp32 copies of the image features, the depth softmax, the pooled BEV grid), and
    only the downsample convs after them autocast: BEVFusion's ``@force_fp32()`` on
    ``BaseTransform.forward``, ``BaseDepthTransform.forward``, ``get_cam_feats`` and ``bev_pool``
    (``mmdet3d/models/vtransforms/base.py``, ``lss.py``, ``depth_lss.py``; mmcv turns autocast off
    inside it once ``Fp16OptimizerHook`` enables fp16), whose ``forward`` calls ``downsample``
    outside that region. In fp32 training nothing changes.
    """

    def __init__(self, in_channels: int, out_channels: int, image_size: tuple, feature_size: tuple,
                 xbound: tuple, ybound: tuple, zbound: tuple, dbound: tuple, downsample: int = 1,
                 pool_impl: str = 'auto', cell_index: str = 'floor', depth_loss_weight: float = 0.0) -> None:
        super().__init__()
        if depth_loss_weight < 0:
            raise ValueError(f'vtransform.depth_loss_weight must be >= 0, got {depth_loss_weight!r}')
        self.depth_loss_weight = float(depth_loss_weight)
        impls = ('auto', 'csr', 'indexed', 'sorted', 'scatter')
        if pool_impl not in impls:
            raise ValueError(f'vtransform.pool_impl must be one of {impls}, got {pool_impl!r}')
        if cell_index not in ('floor', 'trunc'):
            raise ValueError(f"vtransform.cell_index must be 'floor' or 'trunc', got {cell_index!r}")
        self.cell_index = cell_index
        self.pool_impl = 'csr' if pool_impl == 'auto' else pool_impl
        self._mapping_cache: tuple[Tensor, FrustumMapping] | None = None
        self.out_channels = out_channels
        self.image_size = tuple(image_size)
        self.feature_size = tuple(feature_size)
        self.bounds = torch.tensor([xbound, ybound, zbound], dtype=torch.float32)
        self.nx, self.ny, self.nz = bound_cells(xbound), bound_cells(ybound), bound_cells(zbound)
        depths = torch.arange(*dbound, dtype=torch.float32)
        self.num_depth = len(depths)
        self.dbound = tuple(float(v) for v in dbound)
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
            # BEVFusion's LSSTransform.downsample: conv, strided conv, conv (each 3x3 + BN + ReLU).
            self.downsample = nn.Sequential(
                nn.Conv2d(out_channels * self.nz, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(True),
                nn.Conv2d(out_channels, out_channels, 3, stride=downsample, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(True),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(True),
            )

    def frustum_points(self, cams: CameraRig) -> Tensor:
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

    def cell_coords(self, cams: CameraRig) -> Tensor:
        """[B, N, D, fH, fW, 3] long (x, y, z) BEV cell of every frustum point (may lie outside)."""
        geom = self.frustum_points(cams)
        lo = self.bounds[:, 0].to(geom)
        step = self.bounds[:, 2].to(geom)
        rel = (geom - lo) / step
        return (rel.floor() if self.cell_index == 'floor' else rel.trunc()).long()

    def cells(self, cams: CameraRig) -> Tensor:
        """[B, N, D, fH, fW] long flat BEV cell ``((b * nz + z) * ny + y) * nx + x`` of every
        frustum point, -1 outside the grid."""
        cell = self.cell_coords(cams)
        x, y, z = cell.unbind(-1)
        inside = (x >= 0) & (x < self.nx) & (y >= 0) & (y < self.ny) & (z >= 0) & (z < self.nz)
        b = torch.arange(cell.shape[0], device=cell.device).view(-1, 1, 1, 1, 1)
        flat = ((b * self.nz + z) * self.ny + y) * self.nx + x
        return torch.where(inside, flat, -1)

    def mapping(self, cams: CameraRig) -> FrustumMapping:
        """The batch's compact frustum mapping; reused while the cameras and augmentation of the
        batch are unchanged (e.g. at inference with fixed calibration)."""
        key = torch.cat([cams.cam2img.flatten(1), cams.lidar2cam.flatten(1), cams.img_aug.flatten(1),
                         cams.lidar_aug.flatten(1)], 1).detach()
        if self._mapping_cache is not None:
            old_key, old = self._mapping_cache
            if old_key.shape == key.shape and old_key.device == key.device and torch.equal(old_key, key):
                return old
        b = key.shape[0]
        m = FrustumMapping.from_cells(self.cells(cams), b * self.nz * self.ny * self.nx, self.num_depth,
                                      self.feature_size[0] * self.feature_size[1])
        self._mapping_cache = (key.clone(), m)
        return m

    def forward(self, feats: Tensor, cams: CameraRig, points: list[Tensor] | None = None,
                aux: dict[str, Tensor] | None = None) -> Tensor:
        """Args: feats [B, N, C_in, fH, fW]; ``points`` (augmented LiDAR frame): the depth
        supervision's (and a depth-guided subclass's) input; ``aux``: a dict that receives the
        depth loss (``'loss_depth'``) when it is on, in training, with points. Returns: BEV
        features [B, C, ny', nx']."""
        with torch.autocast(feats.device.type, enabled=False):  # BEVFusion's @force_fp32 (class docstring)
            x = self.depth_and_context(full_precision(feats), cams, points)
            self.supervise_depth(x, cams, points, aux)
            bev = self.pool(x, cams, *feats.shape[:2])
        return self.downsample(bev)

    def depth_and_context(self, feats: Tensor, cams: CameraRig, points: list[Tensor] | None) -> Tensor:
        """The depth net's output ``[B * N, D + C, fH, fW]`` (depth logits, then context) for the
        image features ``[B, N, C_in, fH, fW]``; a depth-guided subclass adds the points."""
        return self.depthnet(feats.flatten(0, 1))

    def supervise_depth(self, x: Tensor, cams: CameraRig, points: list[Tensor] | None,
                        aux: dict[str, Tensor] | None) -> None:
        """Put the depth loss of the depth net's output ``x`` ``[B * N, D + C, fH, fW]`` into ``aux``
        (when supervision is on, in training, with points and a dict to put it in)."""
        if self.depth_loss_weight > 0 and self.training and points is not None and aux is not None:
            aux['loss_depth'] = self.depth_loss_weight * self.depth_loss(x[:, : self.num_depth], cams, points)

    def project_points(self, points: list[Tensor], cams: CameraRig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Where the points land in the network images: ``(image, row, column, depth)``, one entry
        per (point, camera) pair that lands inside, ``image`` = sample x N + camera. BEVFusion's
        projection (``BaseDepthTransform.forward``): each point (augmented LiDAR frame) is taken
        back to the original LiDAR frame, into each camera (``cam2img @ lidar2cam``, depth clamped
        to [1e-5, 1e5] for the division), then through the image augmentation; it lands at the
        pixel its coordinates truncate to."""
        n = cams.img_aug.shape[1]
        h, w = self.image_size
        lidar2img = cams.cam2img @ cams.lidar2cam  # [B, N, 4, 4], original LiDAR frame -> original pixels
        out = []
        for i, pts in enumerate(points):
            xyz = pts[:, :3].to(cams.img_aug.dtype)
            aug = cams.lidar_aug[i]
            xyz = (xyz - aug[:3, 3]) @ torch.linalg.inv(aug[:3, :3]).T  # augmented -> original LiDAR frame
            cam = torch.einsum('nij,pj->npi', lidar2img[i, :, :3, :3], xyz) + lidar2img[i, :, None, :3, 3]
            dist = cam[..., 2]  # [N, P]
            uv = cam[..., :2] / cam[..., 2:3].clamp(1e-5, 1e5)
            img_aug = cams.img_aug[i]  # original pixel (u, v, 0, 1) -> augmented pixel
            uv = torch.einsum('nij,npj->npi', img_aug[:, :2, :2], uv) + img_aug[:, None, :2, 3]
            u, v = uv.unbind(-1)
            on = (u >= 0) & (u < w) & (v >= 0) & (v < h)
            cam_ix, pt_ix = on.nonzero(as_tuple=True)
            out.append((i * n + cam_ix, v[cam_ix, pt_ix].long(), u[cam_ix, pt_ix].long(), dist[cam_ix, pt_ix]))
        return tuple(torch.cat(parts) for parts in zip(*out))

    def depth_image(self, points: list[Tensor] | None, cams: CameraRig) -> Tensor:
        """``[B, N, 1, H, W]`` camera depth of the points at the network-image pixels they project
        to (:meth:`project_points`; 0 elsewhere; where several land on one pixel, one of them, as
        in BEVFusion)."""
        b, n = cams.img_aug.shape[:2]
        h, w = self.image_size
        depth = cams.img_aug.new_zeros(b * n * h * w)
        if points is None or not len(points):
            return depth.view(b, n, 1, h, w)
        img, v, u, d = self.project_points(points, cams)
        depth[(img * h + v) * w + u] = d
        return depth.view(b, n, 1, h, w)

    def depth_targets(self, points: list[Tensor], cams: CameraRig) -> Tensor:
        """``[B * N, fH, fW]`` long depth bin of every feature cell, -1 where no return: the
        nearest return of the keyframe sweep (points whose 5th channel, the time lag, is 0; older
        sweeps put moving objects where they were) among those projecting into the cell's pixels
        (:meth:`project_points`), as BEVDepth's ``get_downsampled_gt_depth`` (the minimum of the
        cell's depths), binned by ``dbound`` (depths outside it: -1)."""
        b, n = cams.img_aug.shape[:2]
        (h, w), (fh, fw) = self.image_size, self.feature_size
        if h % fh or w % fw:
            raise ValueError(f'depth supervision: image {h}x{w} is not a multiple of the feature map {fh}x{fw}')
        nearest = cams.img_aug.new_full((b * n * fh * fw,), float('inf'))
        key = [p[p[:, 4] == 0] if p.shape[1] > 4 else p for p in points]
        img, v, u, d = self.project_points(key, cams)
        cell = (img * fh + v // (h // fh)) * fw + u // (w // fw)
        nearest = nearest.scatter_reduce(0, cell, d, 'amin').view(b * n, fh, fw)
        lo, _, step = self.dbound
        bins = ((nearest - lo) / step).floor()
        valid = torch.isfinite(nearest) & (bins >= 0) & (bins < self.num_depth)
        return torch.where(valid, bins, torch.full_like(bins, -1.0)).long()

    def depth_loss(self, logits: Tensor, cams: CameraRig, points: list[Tensor]) -> Tensor:
        """BEVDepth's depth loss of depth logits ``[B * N, D, fH, fW]``: binary cross-entropy of
        the softmax over the bins against the one-hot target bin, summed over the bins and
        averaged over the cells with a target (:meth:`depth_targets`); 0 (in the graph) when no
        cell has one. Computed in fp32."""
        target = self.depth_targets(points, cams)
        fg = target >= 0
        probs = logits.float().softmax(1).permute(0, 2, 3, 1)[fg]  # [M, D]
        if probs.shape[0] == 0:
            return logits.sum() * 0.0
        onehot = F.one_hot(target[fg], self.num_depth).to(probs.dtype)
        return F.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), onehot, reduction='sum') / probs.shape[0]

    def splat(self, x: Tensor, cams: CameraRig, b: int, n: int) -> Tensor:
        """The depth net's output ``[B * N, D + C, fH, fW]`` (depth logits, then context) lifted
        by the depth softmax, pooled into the BEV grid and downsampled: ``[B, C, ny', nx']``."""
        return self.downsample(self.pool(x, cams, b, n))

    def pool(self, x: Tensor, cams: CameraRig, b: int, n: int) -> Tensor:
        """The depth net's output ``[B * N, D + C, fH, fW]`` lifted by the depth softmax and pooled
        into the BEV grid: ``[B, C, ny, nx]`` (before the downsample convs)."""
        fh, fw = x.shape[-2:]
        depth = x[:, : self.num_depth].softmax(1)
        ctx = x[:, self.num_depth:]
        if self.pool_impl == 'csr':
            pooled = depth_weighted_pool(depth, ctx, self.mapping(cams))
            bev = _to_bev(pooled, b, self.nx, self.ny, self.nz)
        else:
            # Reference path: the lifted frustum [B, N, D, fH, fW, C], then pooling.
            vol = depth.unsqueeze(1) * ctx.unsqueeze(2)  # [BN, C, D, fH, fW]
            vol = vol.view(b, n, self.out_channels, self.num_depth, fh, fw).permute(0, 1, 3, 4, 5, 2)
            cell = self.cell_coords(cams)
            batch_ix = torch.arange(b, device=x.device).view(b, 1, 1, 1, 1, 1).expand(*cell.shape[:-1], 1)
            coords = torch.cat([cell, batch_ix], -1).view(-1, 4)
            bev = bev_pool(vol.reshape(-1, self.out_channels), coords, b, self.nx, self.ny, self.nz, self.pool_impl)
        return bev
