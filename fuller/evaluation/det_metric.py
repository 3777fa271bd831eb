"""nuScenes detection metric (mAP, NDS) through the official nuscenes-devkit.

Predictions come out of the head as boxes in the (possibly test-time augmented) LiDAR frame
of each keyframe. They are mapped back through the inverse of ``lidar_aug_matrix``, then
LiDAR -> ego -> global with the sample's calibration, written as a nuScenes submission JSON
and scored by the devkit's ``DetectionEval`` (``detection_cvpr_2019``): AP per class at the
four centre-distance thresholds, the five TP errors, mAP and NDS. The conversion is
vectorised per sample (numpy + scipy rotations); only the JSON records are built in Python.
"""

import json
import os
import os.path as osp
import tempfile

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from scipy.spatial.transform import Rotation

from fuller.datasets.metainfo import CLASSES, MOVING_ATTRIBUTES, MOVING_SPEED, STILL_ATTRIBUTES
from fuller.registry import METRICS
from fuller.utils.io import write_json_atomic

from .meta import dataset_fact

EVAL_SETS = {'v1.0-mini': 'mini_val', 'v1.0-trainval': 'val', 'v1.0-test': 'test'}
# What an empty submission is scored with (NuScenesDetMetric.evaluate_submission): a box far
# beyond every class's range (the devkit removes it before matching), of the lowest score.
PLACEHOLDER_BOX = dict(translation=[1.0e6, 1.0e6, 0.0], size=[1.0, 1.0, 1.0], rotation=[1.0, 0.0, 0.0, 0.0],
                       velocity=[0.0, 0.0], detection_name='car', detection_score=0.0, attribute_name='vehicle.parked')


def default_attributes(names: list[str], velocity: np.ndarray, still: dict[str, str] | None = None,
                       moving: dict[str, str] | None = None) -> list[str]:
    """Attribute per box from its class and speed (the nuScenes attribute is not predicted).

    Args:
        names: detection class per box.
        velocity: [N, 2] velocity in m/s (any frame; only the speed is used).
        still: attribute per class for boxes at speed <= 0.2 m/s, over the devkit's convention
            (:data:`fuller.datasets.metainfo.STILL_ATTRIBUTES`: a still bus is
            ``vehicle.stopped``, other still vehicles ``vehicle.parked``).
        moving: attribute per class for faster boxes, over
            :data:`fuller.datasets.metainfo.MOVING_ATTRIBUTES`.
    """
    still = {**STILL_ATTRIBUTES, **(still or {})}
    moving_attr = {**MOVING_ATTRIBUTES, **(moving or {})}
    is_moving = np.linalg.norm(velocity, axis=1) > MOVING_SPEED
    return [moving_attr[n] if m else still[n] for n, m in zip(names, is_moving)]


def lidar_to_global(boxes: np.ndarray, lidar2global: np.ndarray, aug: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Map LiDAR-frame boxes to global boxes in the devkit's parameterisation.

    Args:
        boxes: [N, 9] (x, y, z_bottom, dx, dy, dz, yaw, vx, vy) in the LiDAR frame, as
            mmdet3d's ``LiDARInstance3DBoxes`` (yaw about z, 0 along +x, dx along the heading).
        lidar2global: 4x4 LiDAR -> global transform (ego2global @ lidar2ego).
        aug: the 4x4 BEV augmentation applied to the points (``lidar_aug_matrix``), undone
            first; ``None`` or identity for none. Rotation, scaling, flips and translation
            are all inverted exactly.

    Returns:
        ``translation`` [N, 3] (box centre), ``size`` [N, 3] (w, l, h), ``rotation`` [N, 4]
        quaternions (w, x, y, z), ``velocity`` [N, 2] (global x, y).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    centre = boxes[:, :3].copy()
    centre[:, 2] += boxes[:, 5] / 2
    size = boxes[:, 3:6].copy()
    yaw = boxes[:, 6]
    heading = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], 1)
    velo = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], 1)
    if aug is not None and not np.allclose(aug, np.eye(4)):
        inv = np.linalg.inv(np.asarray(aug, dtype=np.float64))
        lin = inv[:3, :3]
        centre = centre @ lin.T + inv[:3, 3]
        size = size * abs(np.linalg.det(lin)) ** (1 / 3)
        heading = heading @ lin.T
        velo = velo @ lin.T
    rot = np.asarray(lidar2global, dtype=np.float64)[:3, :3]
    trans = np.asarray(lidar2global, dtype=np.float64)[:3, 3]
    # Box rotation in the LiDAR frame: about z by the (possibly un-augmented) heading.
    hyaw = np.arctan2(heading[:, 1], heading[:, 0])
    c, s = np.cos(hyaw), np.sin(hyaw)
    rz = np.zeros((len(boxes), 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1.0
    quat = Rotation.from_matrix(rot @ rz).as_quat() if len(boxes) else np.zeros((0, 4))  # x, y, z, w
    quat = quat[:, [3, 0, 1, 2]]
    quat *= np.where(quat[:, :1] < 0, -1.0, 1.0)  # canonical sign, w >= 0
    return {
        'translation': centre @ rot.T + trans,
        'size': size[:, [1, 0, 2]],
        'rotation': quat,
        'velocity': (velo @ rot.T)[:, :2],
    }


def global_to_lidar(translation: np.ndarray, size: np.ndarray, rotation: np.ndarray, velocity: np.ndarray,
                    lidar2global: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lidar_to_global` (without augmentation): [N, 9] LiDAR-frame boxes."""
    lidar2global = np.asarray(lidar2global, dtype=np.float64)
    rot, trans = lidar2global[:3, :3], lidar2global[:3, 3]
    centre = (np.asarray(translation, dtype=np.float64) - trans) @ rot
    size = np.asarray(size, dtype=np.float64)[:, [1, 0, 2]]
    q = np.asarray(rotation, dtype=np.float64)
    mats = rot.T @ Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    yaw = np.arctan2(mats[:, 1, 0], mats[:, 0, 0])
    v = np.concatenate([np.asarray(velocity, dtype=np.float64), np.zeros((len(q), 1))], 1) @ rot
    centre[:, 2] -= size[:, 2] / 2
    return np.concatenate([centre, size, yaw[:, None], v[:, :2]], 1)


@METRICS.register_module()
class NuScenesDetMetric(BaseMetric):
    """nuScenes detection mAP / NDS by the nuscenes-devkit.

    Args:
        data_root: dataset root containing ``{version}/`` (the devkit loads it once).
        version: ``v1.0-trainval`` (scored on ``val``) or ``v1.0-mini`` (``mini_val``).
        eval_set: override the split scored; every sample of it must be predicted, as the
            devkit requires.
        classes: class names in the head's label order; default: the dataset's
            ``metainfo['classes']`` (``dataset_meta``, set by the evaluation loop). mAP, the
            TP errors and NDS are averaged over these classes (all ten: the devkit's numbers).
        still_attributes: per-class attribute for still boxes; default: the dataset's
            ``metainfo['still_attributes']``, else the devkit's convention.
        jsonfile_prefix: directory for ``results_nusc.json`` and the devkit's
            ``metrics_summary.json``; a temporary directory when ``None``.
        max_boxes: boxes kept per sample, by score (the devkit allows at most 500).
        modality: the submission's ``meta`` flags ``use_camera`` / ``use_lidar``.
    """

    default_prefix = 'det'

    def __init__(self, data_root: str, version: str = 'v1.0-trainval', eval_set: str | None = None,
                 classes: tuple | None = None, still_attributes: dict | None = None,
                 jsonfile_prefix: str | None = None, max_boxes: int = 500,
                 modality: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if version not in EVAL_SETS:
            raise ValueError(f'NuScenesDetMetric: version={version!r} must be one of {sorted(EVAL_SETS)}')
        self.data_root, self.version = data_root, version
        if not osp.isdir(osp.join(data_root, version)):  # before the test pass, not after it
            raise FileNotFoundError(f'NuScenesDetMetric: no {version}/ tables under data_root={data_root!r} (the devkit '
                                    'scores against them); check data_root and version')
        self.eval_set = eval_set or EVAL_SETS[version]
        self._classes = None if classes is None else self._check_classes(classes)
        self._still_attributes = None if still_attributes is None else dict(still_attributes)
        self.jsonfile_prefix = jsonfile_prefix
        self.max_boxes = min(int(max_boxes), 500)
        self.modality = {'use_camera': True, 'use_lidar': True, **(modality or {})}
        self._nusc = None

    @staticmethod
    def _check_classes(classes) -> tuple:
        unknown = set(classes) - set(CLASSES)
        if unknown:
            raise ValueError(f'NuScenesDetMetric: classes has non-nuScenes names {sorted(unknown)}')
        return tuple(classes)

    @property
    def classes(self) -> tuple:
        """The label order: the ``classes`` argument, else the dataset's ``metainfo['classes']``."""
        if self._classes is None:
            self._classes = self._check_classes(dataset_fact(self, 'classes'))
        return self._classes

    @property
    def still_attributes(self) -> dict:
        if self._still_attributes is None:
            return dict((self.dataset_meta or {}).get('still_attributes', STILL_ATTRIBUTES))
        return self._still_attributes

    # ------------------------------------------------------------------ per batch
    def sample_records(self, sample: dict) -> tuple[str, list[dict]]:
        """Submission records of one predicted sample (a ``Det3DDataSample.to_dict()``)."""
        token = sample.get('token')
        if token is None:
            raise KeyError('NuScenesDetMetric: data sample has no "token" in its metainfo')
        pred = sample['pred_instances_3d']
        scores = pred['scores_3d'].detach().cpu().numpy()
        order = np.argsort(-scores, kind='stable')[:self.max_boxes]
        tensor = pred['bboxes_3d'].tensor.detach().cpu().numpy()[order]
        if tensor.shape[1] < 9:  # heads without velocity
            tensor = np.concatenate([tensor, np.zeros((len(tensor), 9 - tensor.shape[1]))], 1)
        labels = pred['labels_3d'].detach().cpu().numpy()[order]
        lidar2global = np.asarray(sample['ego2global']) @ np.asarray(sample['lidar2ego'])
        g = lidar_to_global(tensor[:, :9], lidar2global, sample.get('lidar_aug_matrix'))
        names = [self.classes[i] for i in labels]
        attrs = default_attributes(names, g['velocity'], self.still_attributes)
        recs = [{
            'sample_token': token,
            'translation': t, 'size': sz, 'rotation': r, 'velocity': v,
            'detection_name': n, 'detection_score': sc, 'attribute_name': a,
        } for t, sz, r, v, n, sc, a in zip(g['translation'].tolist(), g['size'].tolist(), g['rotation'].tolist(),
                                         g['velocity'].tolist(), names, scores[order].tolist(), attrs)]
        return token, recs

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            if 'pred_instances_3d' in s:
                self.results.append(self.sample_records(s))

    # ------------------------------------------------------------------ scoring
    @property
    def nusc(self):
        if self._nusc is None:
            from nuscenes import NuScenes
            if not osp.isdir(osp.join(self.data_root, self.version)):
                raise FileNotFoundError(f'NuScenesDetMetric: no {self.version}/ tables under data_root={self.data_root!r}')
            self._nusc = NuScenes(version=self.version, dataroot=self.data_root, verbose=False)
        return self._nusc

    def evaluate_submission(self, result_path: str, output_dir: str, classes: tuple | None = None,
                            submission: dict | None = None) -> dict:
        """Score a submission JSON with ``DetectionEval``; returns the devkit's metric dict.

        ``classes``: score mAP, the TP errors and NDS over these classes only (a ``metainfo``
        fork with fewer classes); the devkit's own computation, with its config's
        ``class_names`` narrowed after loading (its boxes are loaded and range-filtered with the
        ten classes as always). ``None``: the devkit's ten. ``submission``: the file's content
        when the caller holds it (it is then not read a second time).

        A submission without a single box (a model that detects nothing, e.g. with its LiDAR
        dropped) cannot be loaded by the devkit: its range filter takes the class field from the
        first box it finds and raises without one. It is scored through a copy holding one
        placeholder box 1,000 km from every ego pose, which that filter removes before anything
        is matched, so the devkit computes its own result for no predictions: AP 0 for every
        class, TP errors 1, NDS 0. The submission file itself is left as it is.
        """
        from nuscenes.eval.common.config import config_factory
        from nuscenes.eval.detection.constants import DETECTION_NAMES
        from nuscenes.eval.detection.evaluate import DetectionEval

        if submission is None:
            with open(result_path) as f:
                submission = json.load(f)
        placeholder = None
        if not any(submission['results'].values()):
            token = next(iter(submission['results']), None)
            if token is not None:
                placeholder = osp.join(output_dir, 'results_nusc_placeholder.json')
                write_json_atomic(placeholder, {**submission, 'results': {
                    **submission['results'], token: [PLACEHOLDER_BOX | {'sample_token': token}]}})
        try:
            ev = DetectionEval(self.nusc, config=config_factory('detection_cvpr_2019'),
                               result_path=placeholder or result_path, eval_set=self.eval_set, output_dir=output_dir,
                               verbose=False)
        finally:
            if placeholder is not None:
                os.remove(placeholder)
        if classes is not None and set(classes) != set(DETECTION_NAMES):
            ev.cfg.class_names = [c for c in DETECTION_NAMES if c in set(classes)]
        metrics, _ = ev.evaluate()
        summary = metrics.serialize()
        summary['classes_scored'] = list(ev.cfg.class_names)
        write_json_atomic(osp.join(output_dir, 'metrics_summary.json'), summary, indent=2)
        return summary

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            MMLogger.get_current_instance().warning('NuScenesDetMetric: no box predictions (no det head?); skipped')
            return {}
        submission = {'meta': {**self.modality, 'use_radar': False, 'use_map': False, 'use_external': False},
                      'results': dict(results)}
        tmp = None
        out_dir = self.jsonfile_prefix
        if out_dir is None:
            tmp = tempfile.TemporaryDirectory()
            out_dir = tmp.name
        os.makedirs(out_dir, exist_ok=True)
        result_path = osp.join(out_dir, 'results_nusc.json')
        write_json_atomic(result_path, submission)
        try:
            summary = self.evaluate_submission(result_path, out_dir, self.classes, submission)
        except AssertionError as e:  # the devkit's checks, e.g. missing samples of the split
            raise RuntimeError(f'NuScenesDetMetric: the devkit rejected {result_path} for eval_set='
                               f'{self.eval_set!r}: {e or "samples in split do not match the predictions"}') from e
        finally:
            if tmp is not None:
                tmp.cleanup()
        out = {'mAP': summary['mean_ap'], 'NDS': summary['nd_score']}
        err_names = {'trans_err': 'mATE', 'scale_err': 'mASE', 'orient_err': 'mAOE', 'vel_err': 'mAVE',
                     'attr_err': 'mAAE'}
        for k, v in summary['tp_errors'].items():
            out[err_names[k]] = v
        for c in self.classes:
            out[f'AP_{c}'] = float(np.mean(list(summary['label_aps'][c].values())))
        MMLogger.get_current_instance().info(format_det_table(summary, self.classes))
        return out


def format_det_table(summary: dict, classes: tuple = CLASSES) -> str:
    """The devkit's per-class table (AP, ATE, ASE, AOE, AVE, AAE) plus mAP and NDS."""
    cols = ('trans_err', 'scale_err', 'orient_err', 'vel_err', 'attr_err')
    lines = [f'{"class":<22}{"AP":>7}{"ATE":>7}{"ASE":>7}{"AOE":>7}{"AVE":>7}{"AAE":>7}']
    for c in classes:
        ap = float(np.mean(list(summary['label_aps'][c].values())))
        errs = ''.join(f'{summary["label_tp_errors"][c][k]:>7.3f}' for k in cols)
        lines.append(f'{c:<22}{ap:>7.3f}{errs}')
    lines.append(f'{"mAP":<22}{summary["mean_ap"]:>7.4f}')
    lines.append(f'{"NDS":<22}{summary["nd_score"]:>7.4f}')
    return 'nuScenes detection (devkit, detection_cvpr_2019)\n' + '\n'.join(lines)
