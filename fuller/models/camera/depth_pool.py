"""Depth-weighted BEV pooling without the lifted frustum tensor.

Lift-Splat pools ``out[cell, c] = sum over frustum points p in cell of depth[p] * ctx[pixel(p), c]``.
Building the lifted frustum ``depth x ctx`` ([points, C]; 160 M floats per sample at
BEVFusion's nuScenes settings) is not needed: the sum is a sparse matrix ``M`` (cells x
pixels, one entry per frustum point inside the grid, value ``depth[p]``) times the dense
context features, and its gradients are

- ``d ctx = M^T d out`` (a second sparse-dense product), and
- ``d depth[p] = <d out[cell(p)], ctx[pixel(p)]>``, a sampled dense-dense product on the
  pattern of ``M`` (``torch.sparse.sampled_addmm``).

No step allocates a [points, C] tensor. The mapping (which cell every frustum point falls
in) is compressed once per batch into a :class:`FrustumMapping` (CSR indices sorted by cell
and by pixel, int32 where the sizes allow), which the view transform reuses while the camera
calibration and augmentation do not change (inference).

Entries of ``M`` that share a (cell, pixel) — several depth bins of one pixel in one cell —
are kept as separate entries: the sparse products sum them, and each keeps its own depth
gradient.
"""

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class FrustumMapping:
    """Compact point -> (cell, pixel) mapping of the frustum points inside the BEV grid.

    Attributes:
        crow: [num_cells + 1] CSR row pointers of ``M`` (rows = cells).
        pix_by_cell: [K] pixel of each kept point, sorted by cell (CSR columns of ``M``).
        pt_by_cell: [K] flat frustum-point index of each kept point, in the same order.
        crow_t: [num_pixels + 1] CSR row pointers of ``M^T`` (rows = pixels).
        cell_by_pix: [K] cell of each kept point, sorted by pixel (CSR columns of ``M^T``).
        pt_by_pix: [K] flat frustum-point index, in the same order.
        num_cells: rows of ``M`` (B * nz * ny * nx).
        num_pixels: columns of ``M`` (B * N * fH * fW).
        num_points: frustum points (B * N * D * fH * fW), kept or not.
    """

    crow: Tensor
    pix_by_cell: Tensor
    pt_by_cell: Tensor
    crow_t: Tensor
    cell_by_pix: Tensor
    pt_by_pix: Tensor
    num_cells: int
    num_pixels: int
    num_points: int

    @classmethod
    def from_cells(cls, cell: Tensor, num_cells: int, depth_bins: int, pixels_per_image: int) -> 'FrustumMapping':
        """Build the mapping from every frustum point's flat cell index.

        Args:
            cell: [B*N, D, fH*fW] (or any shape with that element order) long flat cell index
                ``((b * nz + z) * ny + y) * nx + x`` of each frustum point; negative or
                ``>= num_cells`` where the point is outside the grid.
            num_cells: B * nz * ny * nx.
            depth_bins: D.
            pixels_per_image: fH * fW.
        """
        cell = cell.reshape(-1)
        num_points = cell.numel()
        images = num_points // (depth_bins * pixels_per_image)
        num_pixels = images * pixels_per_image
        big = max(num_cells, num_pixels, num_points) >= 2 ** 31 - 1
        itype = torch.int64 if big else torch.int32
        dev = cell.device
        inside = (cell >= 0) & (cell < num_cells)
        # by cell: the kept points in frustum order, stably sorted by cell (int32 keys sort faster)
        pt = torch.nonzero(inside).squeeze(1)
        kept_cell = cell[pt]
        by_cell = torch.argsort(kept_cell.to(itype), stable=True)
        pt_by_cell = pt[by_cell]
        # by pixel: point p = (image * D + d) * HW + hw, so walking the points in (image, hw, d)
        # order is the stable sort by pixel = image * HW + hw, without sorting
        order = torch.arange(num_points, device=dev).view(images, depth_bins, pixels_per_image).transpose(1, 2)
        order = order.reshape(-1)
        pt_by_pix = order[inside[order]]
        per_pixel = inside.view(images, depth_bins, pixels_per_image).sum(1).reshape(-1)

        def crow_of(counts: Tensor) -> Tensor:
            crow = torch.zeros(len(counts) + 1, dtype=torch.int64, device=dev)
            crow[1:] = counts.cumsum(0)
            return crow.to(itype)

        def pixel(p: Tensor) -> Tensor:
            return (p // (depth_bins * pixels_per_image)) * pixels_per_image + p % pixels_per_image

        return cls(crow=crow_of(torch.bincount(kept_cell, minlength=num_cells)),
                   pix_by_cell=pixel(pt_by_cell).to(itype), pt_by_cell=pt_by_cell.to(itype),
                   crow_t=crow_of(per_pixel), cell_by_pix=cell[pt_by_pix].to(itype), pt_by_pix=pt_by_pix.to(itype),
                   num_cells=num_cells, num_pixels=num_pixels, num_points=num_points)

    @property
    def nnz(self) -> int:
        return int(self.pix_by_cell.numel())


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice, once per process
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta', category=UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


# Sparse CSR products on CPU support float32/float64 only: other dtypes compute in float32.
_SPARSE_DTYPES = (torch.float32, torch.float64)


class _DepthWeightedPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, depth: Tensor, feats: Tensor, m: FrustumMapping) -> Tensor:
        values = depth.index_select(0, m.pt_by_cell)
        out = _csr(m.crow, m.pix_by_cell, values, (m.num_cells, m.num_pixels)) @ feats
        ctx.save_for_backward(depth, feats)
        ctx.mapping = m
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        depth, feats = ctx.saved_tensors
        m = ctx.mapping
        grad_out = grad_out.contiguous()
        g_depth = g_feats = None
        if ctx.needs_input_grad[1]:
            values_t = depth.index_select(0, m.pt_by_pix)
            g_feats = _csr(m.crow_t, m.cell_by_pix, values_t, (m.num_pixels, m.num_cells)) @ grad_out
        if ctx.needs_input_grad[0]:
            pattern = _csr(m.crow, m.pix_by_cell, depth.new_zeros(m.nnz), (m.num_cells, m.num_pixels))
            dots = torch.sparse.sampled_addmm(pattern, grad_out, feats.t(), beta=0.0).values()
            g_depth = depth.new_zeros(m.num_points).index_copy_(0, m.pt_by_cell.long(), dots)
        return g_depth, g_feats, None


def depth_weighted_pool(depth: Tensor, ctx: Tensor, mapping: FrustumMapping) -> Tensor:
    """Pool context features weighted by depth probabilities into BEV cells.

    Args:
        depth: [B*N, D, fH, fW] depth probabilities.
        ctx: [B*N, C, fH, fW] context features.
        mapping: the batch's :class:`FrustumMapping`.

    Returns:
        [num_cells, C]: ``out[cell] = sum_{p in cell} depth[p] * ctx[pixel(p)]``, in ``ctx``'s dtype.
    """
    c = ctx.shape[1]
    dtype = ctx.dtype
    work = dtype if dtype in _SPARSE_DTYPES else torch.float32
    depth_flat = depth.to(work).reshape(-1)
    feats = ctx.to(work).permute(0, 2, 3, 1).reshape(-1, c)  # [pixels, C]: one copy of the (small) image features
    if depth_flat.numel() != mapping.num_points or feats.shape[0] != mapping.num_pixels:
        raise ValueError(f'depth_weighted_pool: inputs have {depth_flat.numel()} frustum points and '
                         f'{feats.shape[0]} pixels, the mapping {mapping.num_points} and {mapping.num_pixels}')
    with torch.autocast(ctx.device.type, enabled=False):
        out = _DepthWeightedPool.apply(depth_flat, feats, mapping)
    return out.to(dtype)
