"""Box geometry of GT-paste in numpy: which points lie in which LiDAR box, and which boxes overlap
in BEV (mmdet3d 1.x's ``LiDARInstance3DBoxes`` layout; equal to mmdet3d's ``box_np_ops`` and
``box_collision_test``: tests/test_datasets/test_gt_paste.py)."""

import numpy as np

__all__ = ['points_in_boxes', 'boxes_overlap_bev']


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which points lie in which box (boundary included).

    Args:
        points: [N, >=3] xyz first.
        boxes: [M, >=7] LiDAR boxes: bottom centre x, y, z, sizes l (along the heading), w, h,
            yaw (counter-clockwise from +x), mmdet3d 1.x's ``LiDARInstance3DBoxes`` layout.

    Returns:
        [N, M] bool.
    """
    pts = np.asarray(points, dtype=np.float64)[:, None, :3]
    b = np.asarray(boxes, dtype=np.float64)
    if len(b) == 0:
        return np.zeros((len(pts), 0), bool)
    d = pts - b[None, :, :3]
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    lx = d[..., 0] * c + d[..., 1] * s  # the offset in each box's frame
    ly = -d[..., 0] * s + d[..., 1] * c
    return ((np.abs(lx) <= b[:, 3] / 2) & (np.abs(ly) <= b[:, 4] / 2) & (d[..., 2] >= 0) & (d[..., 2] <= b[:, 5]))


def _bev_corners(boxes: np.ndarray) -> np.ndarray:
    """[M, 4, 2] BEV corners of boxes (x, y, l, w at columns 0, 1, 3, 4; yaw at 6)."""
    b = np.asarray(boxes, dtype=np.float64)
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float64) / 2
    local = half[None] * b[:, None, [3, 4]]
    c, s = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s + b[:, None, 0]
    y = local[..., 0] * s + local[..., 1] * c + b[:, None, 1]
    return np.stack([x, y], -1)


def boxes_overlap_bev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the BEV rectangles of boxes ``a`` [M, >=7] and ``b`` [K, >=7] overlap (the
    separating-axis test on their edge normals; touching counts as overlap), [M, K] bool. The
    collision test of GT-paste: a pasted box may overlap no existing and no other pasted box."""
    ca, cb = _bev_corners(a), _bev_corners(b)
    if len(ca) == 0 or len(cb) == 0:
        return np.zeros((len(ca), len(cb)), bool)

    def axes(c):  # the two edge directions of each rectangle (its normals, up to a rotation)
        return np.stack([c[:, 1] - c[:, 0], c[:, 3] - c[:, 0]], 1)  # [., 2, 2]

    def separated(own, other, ax):  # own [M, 4, 2] with its axes ax [M, 2, 2]; other [K, 4, 2] -> [M, K]
        p_own = np.einsum('mcd,mkd->mkc', own, ax)[:, None]  # [M, 1, 2, 4]
        p_other = np.einsum('ncd,mkd->mnkc', other, ax)  # [M, K, 2, 4]
        gap = (p_own.max(-1) < p_other.min(-1)) | (p_other.max(-1) < p_own.min(-1))
        return gap.any(-1)

    return ~(separated(ca, cb, axes(ca)) | separated(cb, ca, axes(cb)).T)
