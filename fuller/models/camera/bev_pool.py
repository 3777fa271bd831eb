"""BEV pooling: sum frustum features that fall into the same BEV cell.

Three pure-PyTorch formulations with one contract (no Python loops in any):

- :func:`bev_pool_sorted` sorts points by cell and reduces contiguous segments
  (deterministic; the formulation of BEVFusion's interval kernel);
- :func:`bev_pool_indexed` adds every point into its cell with one ``index_add``, points
  outside the grid going to a spare row that is dropped: no filtering copy of the features
  in the forward and a single gather in the backward. It is the fastest on CPU
  (docs/benchmarks/bevpool.md);
- :func:`bev_pool_scatter`, the naive scatter-add (filter, then ``index_add``), kept as the
  independent reference of the tests.

:func:`bev_pool` picks one by device (``impl='auto'``: indexed on CPU, sorted on CUDA,
where ``index_add`` adds with atomics in a varying order).
"""

import torch
from torch import Tensor


def _cell_index(coords: Tensor, batch_size: int, nx: int, ny: int, nz: int) -> tuple[Tensor, Tensor]:
    """Flat cell index of every point (meaningful only where inside) and the inside-the-grid mask.

    Args:
        coords: [P, 4] long (x, y, z, batch) cell coordinates.
    """
    keep = (
        (coords[:, 0] >= 0) & (coords[:, 0] < nx) & (coords[:, 1] >= 0) & (coords[:, 1] < ny)
        & (coords[:, 2] >= 0) & (coords[:, 2] < nz) & (coords[:, 3] >= 0) & (coords[:, 3] < batch_size)
    )
    flat = ((coords[:, 3] * nz + coords[:, 2]) * ny + coords[:, 1]) * nx + coords[:, 0]
    return flat, keep


def _to_bev(out: Tensor, batch_size: int, nx: int, ny: int, nz: int) -> Tensor:
    c = out.shape[1]
    return out.view(batch_size, nz, ny, nx, c).permute(0, 4, 1, 2, 3).reshape(batch_size, c * nz, ny, nx)


def bev_pool(feats: Tensor, coords: Tensor, batch_size: int, nx: int, ny: int, nz: int = 1,
             impl: str = 'auto') -> Tensor:
    """Sum-pool point features into a BEV grid.

    Args:
        feats: [P, C] features of frustum points.
        coords: [P, 4] long cell coordinates (x, y, z, batch); points outside are dropped.
        batch_size: B.
        nx, ny, nz: grid size.
        impl: ``'auto'``, ``'indexed'``, ``'sorted'`` or ``'scatter'``.

    Returns:
        [B, C * nz, ny, nx] pooled features (z folded into channels).
    """
    if impl == 'auto':
        impl = 'sorted' if feats.is_cuda else 'indexed'
    fns = {'indexed': bev_pool_indexed, 'sorted': bev_pool_sorted, 'scatter': bev_pool_scatter}
    if impl not in fns:
        raise ValueError(f"bev_pool: impl must be 'auto' or one of {sorted(fns)}, got {impl!r}")
    return fns[impl](feats, coords, batch_size, nx, ny, nz)


def bev_pool_indexed(feats: Tensor, coords: Tensor, batch_size: int, nx: int, ny: int, nz: int = 1) -> Tensor:
    """One ``index_add`` into the grid plus a spare row for points outside it (see module doc)."""
    n = batch_size * nz * ny * nx
    flat, inside = _cell_index(coords, batch_size, nx, ny, nz)
    flat = torch.where(inside, flat, n)
    out = feats.new_zeros(n + 1, feats.shape[1]).index_add(0, flat, feats)
    return _to_bev(out[:n], batch_size, nx, ny, nz)


def bev_pool_sorted(feats: Tensor, coords: Tensor, batch_size: int, nx: int, ny: int, nz: int = 1) -> Tensor:
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
    flat, x = flat[keep], feats[keep]
    c = feats.shape[1]
    out = feats.new_zeros(batch_size * nz * ny * nx, c)
    if flat.numel():
        flat, order = torch.sort(flat)
        cells, counts = torch.unique_consecutive(flat, return_counts=True)
        out = out.index_copy(0, cells, torch.segment_reduce(x[order], 'sum', lengths=counts))
    return _to_bev(out, batch_size, nx, ny, nz)


def bev_pool_scatter(feats: Tensor, coords: Tensor, batch_size: int, nx: int, ny: int, nz: int = 1) -> Tensor:
    """Reference BEV pooling with ``index_add`` (same contract as :func:`bev_pool`)."""
    flat, keep = _cell_index(coords, batch_size, nx, ny, nz)
    c = feats.shape[1]
    out = feats.new_zeros(batch_size * nz * ny * nx, c).index_add(0, flat[keep], feats[keep])
    return _to_bev(out, batch_size, nx, ny, nz)
