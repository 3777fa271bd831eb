"""The ground-truth database for GT-paste: the LiDAR points inside every annotated box.

:func:`create_gt_database` writes, for the train split, one ``.bin`` per object (its points,
moved so that the box's bottom centre is the origin) under ``{tag}_gt_database/`` and an index
``{tag}_dbinfos_train.pkl`` (class name -> list of entries), the files and the entry layout of
mmdet3d's and BEVFusion's ``create_groundtruth_database``
(mit-han-lab/bevfusion ``tools/data_converter/create_gt_database.py``): ``name``, ``path``
(relative to the data root), ``image_idx`` (the sample token), ``gt_idx``, ``box3d_lidar``
(x, y, z of the bottom centre, l, w, h, yaw, vx, vy in the LiDAR frame), ``num_points_in_gt``,
``difficulty`` (0: nuScenes has none) and ``group_id``. As there, the points are those the
train pipeline sees (the keyframe and up to ``sweeps`` previous sweeps in the keyframe's frame,
the fifth channel the time lag) of the boxes the dataset keeps (``use_valid_flag``: boxes with
at least one LiDAR or radar point). :class:`~fuller.datasets.transforms.ObjectPaste` reads it.
"""

import os
import os.path as osp
import pickle

import numpy as np
from tqdm import tqdm

from .metainfo import CLASSES

__all__ = ['points_in_boxes', 'boxes_overlap_bev', 'create_gt_database', 'DB_INFO_KEYS']

DB_INFO_KEYS = ('name', 'path', 'image_idx', 'gt_idx', 'box3d_lidar', 'num_points_in_gt', 'difficulty', 'group_id')


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


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        if osp.exists(tmp):
            os.remove(tmp)
        raise OSError(e.errno, f'could not write {path}: {e.strerror or e}') from e


def create_gt_database(data_root: str, info_path: str, tag: str = 'nuscenes', sweeps: int = 10,
                       classes: tuple = CLASSES, progress: bool = True) -> str:
    """Write the GT database of the split in ``info_path`` under ``data_root``.

    Args:
        data_root: the dataset root (the database goes to ``{data_root}/{tag}_gt_database/``
            and ``{data_root}/{tag}_dbinfos_train.pkl``; entries name files relative to it).
        info_path: the train info file (tools/create_data.py).
        tag: the file-name prefix (``--extra-tag``).
        sweeps: previous LiDAR sweeps added to the keyframe, as the database's points
            (BEVFusion: LoadPointsFromMultiSweeps ``sweeps_num=10``).
        classes: classes whose objects are stored.
        progress: show a progress bar.

    Returns:
        The path of the written ``dbinfos`` file.
    """
    from mmengine.registry import DefaultScope

    from . import transforms  # noqa: F401  (registers the loading steps)
    from .nuscenes_mtl import NuScenesMultiTaskDataset  # heavy import (mmdet3d), only when building

    with DefaultScope.overwrite_default_scope('fuller'):
        dataset = NuScenesMultiTaskDataset(
            data_root=data_root, ann_file=info_path, test_mode=False, use_valid_flag=True, box_type_3d='LiDAR',
            modality=dict(use_lidar=True, use_camera=False), check_files=0, serialize_data=False,
            metainfo=dict(classes=list(classes)),
            pipeline=[dict(type='LoadMultiSweepPoints', sweeps=sweeps),
                      dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True)])
    db_dir = osp.join(data_root, f'{tag}_gt_database')
    os.makedirs(db_dir, exist_ok=True)
    db_infos: dict[str, list] = {c: [] for c in classes}
    group = 0
    for j in tqdm(range(len(dataset)), desc='gt database', disable=not progress):
        example = dataset.pipeline(dataset.get_data_info(j))
        points = example['points'].tensor.numpy()
        boxes = example['gt_bboxes_3d'].tensor.numpy()
        labels = np.asarray(example['gt_labels_3d'])
        token = example['token']
        inside = points_in_boxes(points, boxes)
        for i in range(len(boxes)):
            if not 0 <= labels[i] < len(classes):
                continue
            name = classes[labels[i]]
            obj = points[inside[:, i]].astype(np.float32)
            obj[:, :3] -= boxes[i, :3]
            rel = osp.join(f'{tag}_gt_database', f'{token}_{name}_{i}.bin')
            _write_atomic(osp.join(data_root, rel), obj.tobytes())
            db_infos[name].append({
                'name': name, 'path': rel, 'image_idx': token, 'gt_idx': i,
                'box3d_lidar': boxes[i].astype(np.float32), 'num_points_in_gt': int(len(obj)), 'difficulty': 0,
                'group_id': group,
            })
            group += 1
    out = osp.join(data_root, f'{tag}_dbinfos_train.pkl')
    _write_atomic(out, pickle.dumps(db_infos, protocol=4))
    return out
