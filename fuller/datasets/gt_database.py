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

from fuller.utils.io import write_bytes_atomic

from .box_ops import points_in_boxes
from .metainfo import CLASSES

__all__ = ['create_gt_database']



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
            write_bytes_atomic(osp.join(data_root, rel), obj.tobytes(), fsync=False)
            db_infos[name].append({
                'name': name, 'path': rel, 'image_idx': token, 'gt_idx': i,
                'box3d_lidar': boxes[i].astype(np.float32), 'num_points_in_gt': int(len(obj)), 'difficulty': 0,
                'group_id': group,
            })
            group += 1
    out = osp.join(data_root, f'{tag}_dbinfos_train.pkl')
    write_bytes_atomic(out, pickle.dumps(db_infos, protocol=4))
    return out
