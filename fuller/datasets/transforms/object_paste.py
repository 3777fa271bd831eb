"""GT-paste: objects of the ground-truth database pasted into a training sample's LiDAR scan.

BEVFusion's ``ObjectPaste`` with its ``DataBaseSampler`` (mit-han-lab/bevfusion
``mmdet3d/datasets/pipelines/transforms_3d.py`` and ``dbsampler.py``), the rules kept: for each
class of ``sample_groups`` the sample is topped up to that many objects (``rate`` x (target -
objects of the class already there)); the candidates of a class are drawn in turn from a shuffled
list of the database's objects of the class (reshuffled when used up, the last draw of a pass
taking what is left); a candidate whose BEV box overlaps a box of the sample, an accepted one or
a later candidate is dropped; the points of the scan inside an accepted box are removed and the
object's points put in; the boxes and labels follow. Nothing is drawn into the camera images: a
pasted object is a LiDAR object only (BEVFusion's LiDAR-only stage; its camera stages set
``gt_paste_stop_epoch: -1``, no paste), so a camera+LiDAR pipeline with paste teaches the model
objects its cameras cannot see, and its depth input (LiDAR points projected into the images)
gets points where the images show none.

The database: :func:`fuller.datasets.gt_database.create_gt_database` (``tools/create_data.py``).
The pipeline is switched off from epoch ``stop_epoch`` on by :class:`fuller.engine.hooks.PipelineEpochHook`
(``set_epoch``; it restarts persistent data workers so that they see it).
"""

import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform

from fuller.registry import TRANSFORMS

from ..box_ops import boxes_overlap_bev, points_in_boxes
from ..info_io import load_info_file
from .loading import DataFileError

# the keys of a database entry (fuller.datasets.gt_database writes them)
DB_INFO_KEYS = ('name', 'path', 'image_idx', 'gt_idx', 'box3d_lidar', 'num_points_in_gt', 'difficulty', 'group_id')


class _ClassDraws:
    """The shuffled cycle of one class's database entries (BEVFusion's ``BatchSampler``)."""

    def __init__(self, entries: list) -> None:
        self.entries = entries
        self.order = np.random.permutation(len(entries))
        self.pos = 0

    def draw(self, num: int) -> list:
        if self.pos + num >= len(self.entries):
            idx = self.order[self.pos:].copy()
            self.order = np.random.permutation(len(self.entries))
            self.pos = 0
        else:
            idx = self.order[self.pos:self.pos + num]
            self.pos += num
        return [self.entries[i] for i in idx]


@TRANSFORMS.register_module()
class ObjectPaste(BaseTransform):
    """Paste database objects into the LiDAR scan (after ``LoadAnnotations3D``, before the
    augmentations, as in BEVFusion).

    Args:
        db_sampler: the database and how to draw from it, BEVFusion's ``db_sampler`` keys:
            ``info_path`` (the ``dbinfos`` file, relative to ``data_root`` unless absolute),
            ``rate``, ``prepare`` (``filter_by_difficulty``: difficulties dropped;
            ``filter_by_min_points``: class -> fewest points an entry needs),
            ``sample_groups`` (class -> objects wanted per sample), ``points_loader``
            (``load_dim``, ``use_dim`` of the object files).
        stop_epoch: paste in epochs ``0 .. stop_epoch - 1`` only (BEVFusion's
            ``gt_paste_stop_epoch``; ``None``: always; ``-1`` or ``0``: never).
        data_root: the dataset root (filled by the dataset).
        classes: the detection classes, label order (filled by the dataset).
        trust_info_file: read the ``dbinfos`` file with the full unpickler (see
            :mod:`fuller.datasets.info_io`).
    """

    def __init__(self, db_sampler: dict, stop_epoch: int | None = None, data_root: str = '',
                 classes: tuple = (), trust_info_file: bool = False) -> None:
        cfg = dict(db_sampler)
        unknown = set(cfg) - {'info_path', 'rate', 'prepare', 'sample_groups', 'points_loader', 'classes',
                              'dataset_root', 'type'}
        if unknown:
            raise KeyError(f'ObjectPaste.db_sampler: unknown keys {sorted(unknown)}')
        self.classes = tuple(cfg.get('classes') or classes)
        if not self.classes:
            raise ValueError('ObjectPaste: no classes (the dataset fills them from its metainfo)')
        path = cfg['info_path']
        root = cfg.get('dataset_root') or data_root
        self.data_root = root
        self.info_path = path if osp.isabs(path) or osp.isfile(path) else osp.join(root, path)
        self.rate = float(cfg.get('rate', 1.0))
        loader = dict(cfg.get('points_loader') or {})
        self.load_dim = int(loader.get('load_dim', 5))
        use = loader.get('use_dim', self.load_dim)
        self.use_dim = list(range(use)) if isinstance(use, int) else list(use)
        self.sample_groups = {str(k): int(v) for k, v in cfg['sample_groups'].items()}
        bad = [k for k in self.sample_groups if k not in self.classes]
        if bad:
            raise KeyError(f'ObjectPaste.db_sampler.sample_groups: {bad} are not among the classes {list(self.classes)}')
        self.stop_epoch = stop_epoch
        self.epoch = 0
        if not osp.isfile(self.info_path):
            raise FileNotFoundError(f'GT database index not found: {self.info_path} (build it with tools/create_data.py, '
                                    'which writes <data_root>/<tag>_dbinfos_train.pkl and <tag>_gt_database/)')
        db = load_info_file(self.info_path, trusted=trust_info_file)
        if not isinstance(db, dict) or any(not isinstance(v, list) for v in db.values()):
            raise ValueError(f'{self.info_path} is not a GT database index (class name -> list of entries)')
        for name, entries in db.items():
            missing = [k for k in DB_INFO_KEYS if entries and k not in entries[0]]
            if missing:
                raise KeyError(f'{self.info_path}: the {name} entries lack {missing}')
        prepare = dict(cfg.get('prepare') or {})
        drop = set(prepare.pop('filter_by_difficulty', []))
        min_points = {str(k): int(v) for k, v in (prepare.pop('filter_by_min_points', {}) or {}).items()}
        if prepare:
            raise KeyError(f'ObjectPaste.db_sampler.prepare: unknown filters {sorted(prepare)}')
        self.db = {name: [e for e in db.get(name, []) if e['difficulty'] not in drop
                          and e['num_points_in_gt'] >= min_points.get(name, 0)] for name in self.sample_groups}
        self._draws = {name: _ClassDraws(e) for name, e in self.db.items() if e}

    @property
    def active(self) -> bool:
        return self.stop_epoch is None or self.epoch < self.stop_epoch

    def set_epoch(self, epoch: int) -> bool:
        """Set the training epoch; return whether that switched pasting on or off."""
        was = self.active
        self.epoch = int(epoch)
        return was != self.active

    def _load(self, entry: dict) -> np.ndarray:
        path = osp.join(self.data_root, entry['path'])
        if not osp.isfile(path):
            raise DataFileError(f'GT database object file not found: {path} (listed in {self.info_path})')
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % self.load_dim:
            raise DataFileError(f'corrupt GT database object {path}: {raw.size} floats is not a whole number of '
                                f'{self.load_dim}-float records')
        pts = raw.reshape(-1, self.load_dim)[:, self.use_dim].copy()
        pts[:, :3] += np.asarray(entry['box3d_lidar'][:3], np.float32)
        return pts

    def sample(self, gt_boxes: np.ndarray, gt_labels: np.ndarray) -> list:
        """The database entries to paste into a sample with these boxes and labels."""
        chosen, avoid = [], np.asarray(gt_boxes, np.float64)[:, :7]
        for name, target in self.sample_groups.items():
            label = self.classes.index(name)
            num = int(np.round(self.rate * (target - int(np.sum(gt_labels == label)))))
            if num <= 0 or name not in self._draws:
                continue
            cands = self._draws[name].draw(num)
            if not cands:
                continue
            cboxes = np.stack([np.asarray(c['box3d_lidar'], np.float64)[:7] for c in cands])
            allb = np.concatenate([avoid, cboxes])
            coll = boxes_overlap_bev(allb, allb)
            np.fill_diagonal(coll, False)
            n0, accepted = len(avoid), []
            for i in range(n0, n0 + len(cands)):
                if coll[i].any():
                    coll[i] = False
                    coll[:, i] = False
                else:
                    accepted.append(i)
            chosen += [cands[i - n0] for i in accepted]
            avoid = np.concatenate([avoid, allb[accepted]])
        return chosen

    def transform(self, results: dict) -> dict:
        if not self.active:
            return results
        boxes = results['gt_bboxes_3d']
        labels = np.asarray(results['gt_labels_3d'])
        chosen = self.sample(boxes.tensor.numpy(), labels)
        if not chosen:
            return results
        new_boxes = np.stack([np.asarray(c['box3d_lidar'], np.float32) for c in chosen])
        if new_boxes.shape[1] != boxes.tensor.shape[1]:
            raise ValueError(f'{self.info_path}: database boxes have {new_boxes.shape[1]} values, the sample\'s '
                             f'{boxes.tensor.shape[1]}; rebuild the database with tools/create_data.py')
        points = results['points']
        obj_pts = np.concatenate([self._load(c) for c in chosen])
        if obj_pts.shape[1] != points.tensor.shape[1]:
            raise ValueError(f'ObjectPaste: database points have {obj_pts.shape[1]} channels (points_loader.use_dim '
                             f'{self.use_dim}), the scan {points.tensor.shape[1]}: make them agree')
        keep = ~points_in_boxes(points.tensor.numpy(), new_boxes).any(1)
        scan = points.tensor.numpy()[keep]
        results['points'] = points.new_point(np.concatenate([obj_pts, scan]).astype(np.float32))
        results['gt_bboxes_3d'] = boxes.new_box(np.concatenate([boxes.tensor.numpy(), new_boxes]))
        results['gt_labels_3d'] = np.concatenate(
            [labels, np.array([self.classes.index(c['name']) for c in chosen], labels.dtype)])
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(info_path={self.info_path!r}, sample_groups={self.sample_groups}, '
                f'stop_epoch={self.stop_epoch})')
