"""BEV pooling: sum frustum features that fall into the same BEV cell.

:func:`bev_pool` sorts points by cell and reduces contiguous segments (no Python loops);
it is the CPU path and the reference the faster GPU paths are tested against.
:func:`bev_pool_scatter` is the plain scatter-add formulation used as an independent check.
"""

import torch
from torch import Tensor


def _cell_index(coords: Tensor, batch_size: int, nx: int, ny: int, nz: int) -> tuple[Tensor, Tensor]:
    """Keep points inside the grid; return their flat cell index and the keep mask.

    Args:
        coords: [P, 4] long (x, y, z, batch) cell coordinates.
    """
    keep = (
        (coords[:, 0] >= 0) & (coords[:, 0] < nx) & (coords[:, 1] >= 0) & (coords[:, 1] < ny)
        & (coords[:, 2] >= 0) & (coords[:, 2] < nz) & (coords[:, 3] >= 0) & (coords[:, 3] < batch_size)
    )
    c = coords[keep]
    flat = ((c[:, 3] * nz + c[:, 2]) * ny + c[:, 1]) * nx + c[:, 0]
    return flat, keep


def bev_pool(feats: Tensor, coords: Tensor, batch_size: int, nx: int, ny: int, nz: int = 1) -> Tensor:
    """Sum-pool point features into a BEV grid by sorting and segment reduction.

    Args:
        feats: [P, C] features of frustum points.
        coords: [P, 4] long cell coordinates (x, y, z, batch); points outside are dropped.
        batch_size: B.
        nx, ny, nz: grid size.

    Returns:
        [B, C * nz, ny, nx] pooled features (z folded into channels).
    """
    flat, keep = _cell_index(coords, batch_size, nx, ny, nz)
    x = feats[keep]
    c = feats.shape[1]
    out = feats.new_zeros(batch_size * nz * ny * nx, c)
    if flat.numel():
        flat, order = torch.sort(flat)
        cells, counts = torch.unique_consecutive(flat, return_counts=True)
        out = out.index_copy(0, cells, torch.segment_reduce(x[order], 'sum', lengths=counts))
    return out.view(batch_size, nz, ny, nx, c).permute(0, 4, 1, 2, 3).reshape(batch_size, c * nz, ny, nx)


def bev_pool_scatter(feats: Tensor, coords: Tensor, batch_size: int, nx: int, ny: int, nz: int = 1) -> Tensor:
    """Reference BEV pooling with ``index_add`` (same contract as :func:`bev_pool`)."""
    flat, keep = _cell_index(coords, batch_size, nx, ny, nz)
    c = feats.shape[1]
    out = feats.new_zeros(batch_size * nz * ny * nx, c).index_add(0, flat, feats[keep])
    return out.view(batch_size, nz, ny, nx, c).permute(0, 4, 1, 2, 3).reshape(batch_size, c * nz, ny, nx)
