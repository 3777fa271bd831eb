"""Grid arithmetic shared by the datasets, the models and the hooks (a leaf: imports no package).

A bound is ``[lo, hi, step]`` (``xbound``/``ybound`` of a map or BEV grid); a geometry is the
top-level ``geometry`` dict of a config (``point_cloud_range``, ``voxel_size``, ``bev_stride``,
``image_size``, ``map_bound``).
"""

__all__ = ['bev_cell', 'bound_cells', 'grid_shape', 'same_value']


def same_value(a, b) -> bool:
    """Two config values are equal up to list/tuple and int/float spelling."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


def bound_cells(bound) -> int:
    """Cells of ``bound = [lo, hi, step]``, ``round((hi - lo) / step)``."""
    return int(round((bound[1] - bound[0]) / bound[2]))


def grid_shape(geometry: dict) -> tuple[int, int, int]:
    """(nx, ny, nz) LiDAR voxels of the point-cloud range; a range that is not a whole number
    of voxels is an error."""
    pc, vs = geometry['point_cloud_range'], geometry['voxel_size']
    n = [(pc[i + 3] - pc[i]) / vs[i] for i in range(3)]
    if any(abs(v - round(v)) > 1e-6 for v in n):
        raise ValueError(f'geometry: point_cloud_range {pc} is not a whole number of voxels {vs}')
    return tuple(int(round(v)) for v in n)


def bev_cell(geometry: dict) -> tuple[float, float]:
    """(x, y) size in metres of one cell of the shared BEV grid (``voxel_size * bev_stride``)."""
    vs, stride = geometry['voxel_size'], int(geometry['bev_stride'])
    return vs[0] * stride, vs[1] * stride

