"""TransFusion's box coding and its Hungarian assignment of queries to ground truth, in 3D.

As BEVFusion configures them (``configs/nuscenes/det/transfusion/default.yaml``):

* :class:`TransFusionBBoxCoder` codes a box ``(x, y, z, dx, dy, dz, yaw, vx, vy)`` (z at the
  bottom) as ``(x, y)`` in BEV feature cells from the range's lower corner, the gravity-centre
  ``z`` in metres, ``log(dx, dy, dz)``, ``(sin yaw, cos yaw)`` and the velocity: 10 numbers, the
  order of the head's branches ``center, height, dim, rot, vel``.
* :class:`HungarianAssigner3D` matches each decoder layer's queries one-to-one to the ground
  truth by ``linear_sum_assignment`` over the weighted sum of three costs: a focal
  classification cost (mmdet's ``FocalLossCost``, weight 0.15), the L1 distance of the BEV
  centres normalised by the range (:class:`BBoxBEVL1Cost`, 0.25) and the negative 3D IoU
  (:class:`IoU3DCost`, 0.25; mmdet3d's ``BboxOverlaps3D`` in LiDAR coordinates). Unmatched
  queries are background.
"""

import numpy as np
import torch
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from fuller.registry import TASK_UTILS


@TASK_UTILS.register_module()
class TransFusionBBoxCoder:
    """Args:
        pc_range: ``(x_min, y_min)`` of the point-cloud range.
        out_size_factor: voxels per BEV feature cell.
        voxel_size: ``(x, y)`` voxel size in metres.
        post_center_range: ``(x0, y0, z0, x1, y1, z1)``: decoded boxes whose centre lies outside
            are dropped when filtering.
        score_threshold: decoded boxes scoring at or below it are dropped when filtering.
        code_size: 10 with velocity, 8 without.
    """

    def __init__(self, pc_range, out_size_factor: int, voxel_size, post_center_range=None,
                 score_threshold: float | None = None, code_size: int = 10) -> None:
        if code_size not in (8, 10):
            raise ValueError(f'TransFusionBBoxCoder code_size must be 8 or 10 (with velocity), got {code_size}')
        self.pc_range = [float(v) for v in pc_range[:2]]
        self.out_size_factor = out_size_factor
        self.voxel_size = [float(v) for v in voxel_size[:2]]
        self.post_center_range = None if post_center_range is None else [float(v) for v in post_center_range]
        self.score_threshold = score_threshold
        self.code_size = code_size

    def _cell(self, axis: int) -> float:
        return self.out_size_factor * self.voxel_size[axis]

    def encode(self, boxes: Tensor) -> Tensor:
        """``[N, 7 or 9]`` boxes (bottom-centre z) -> ``[N, code_size]`` targets."""
        cols = [(boxes[:, 0] - self.pc_range[0]) / self._cell(0),
                (boxes[:, 1] - self.pc_range[1]) / self._cell(1),
                boxes[:, 2] + boxes[:, 5] * 0.5,  # bottom centre -> gravity centre
                boxes[:, 3].log(), boxes[:, 4].log(), boxes[:, 5].log(),
                torch.sin(boxes[:, 6]), torch.cos(boxes[:, 6])]
        if self.code_size == 10:
            cols += [boxes[:, 7], boxes[:, 8]]
        return torch.stack(cols, dim=1)

    def decode(self, heatmap: Tensor, rot: Tensor, dim: Tensor, center: Tensor, height: Tensor,
               vel: Tensor | None, filter: bool = False) -> list[dict]:
        """Branch outputs ``[B, k, P]`` -> per sample ``dict(bboxes [P', 7 or 9], scores, labels)``
        (bottom-centre z, yaw from ``atan2(sin, cos)``); ``filter``: keep only the boxes above
        ``score_threshold`` inside ``post_center_range``."""
        scores, labels = heatmap.max(1)
        x = center[:, 0] * self._cell(0) + self.pc_range[0]
        y = center[:, 1] * self._cell(1) + self.pc_range[1]
        dims = dim.exp()
        z = height[:, 0] - dims[:, 2] * 0.5  # gravity centre -> bottom centre
        yaw = torch.atan2(rot[:, 0], rot[:, 1])
        cols = [x, y, z, dims[:, 0], dims[:, 1], dims[:, 2], yaw]
        if vel is not None:
            cols += [vel[:, 0], vel[:, 1]]
        boxes = torch.stack(cols, dim=-1)  # [B, P, 7 or 9]
        keep = torch.ones_like(scores, dtype=torch.bool)
        if filter:
            if self.score_threshold is not None:
                keep &= scores > self.score_threshold
            if self.post_center_range is not None:
                r = boxes.new_tensor(self.post_center_range)
                keep &= ((boxes[..., :3] >= r[:3]) & (boxes[..., :3] <= r[3:])).all(-1)
        return [dict(bboxes=boxes[i][keep[i]], scores=scores[i][keep[i]], labels=labels[i][keep[i]])
                for i in range(heatmap.shape[0])]


@TASK_UTILS.register_module()
class BBoxBEVL1Cost:
    """L1 distance of the BEV centres, each axis normalised by the point-cloud range's extent."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, boxes: Tensor, gt_boxes: Tensor, point_cloud_range) -> Tensor:
        lo = boxes.new_tensor(point_cloud_range[0:2])
        extent = boxes.new_tensor(point_cloud_range[3:5]) - lo
        return torch.cdist((boxes[:, :2] - lo) / extent, (gt_boxes[:, :2] - lo) / extent, p=1) * self.weight


@TASK_UTILS.register_module()
class IoU3DCost:
    """Negative 3D IoU."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def __call__(self, iou: Tensor) -> Tensor:
        return -iou * self.weight


# BEVFusion's costs (configs/nuscenes/det/transfusion/default.yaml, train_cfg.assigner).
ASSIGNER_DEFAULTS = dict(
    cls_cost=dict(type='mmdet.FocalLossCost', gamma=2.0, alpha=0.25, weight=0.15),
    reg_cost=dict(type='BBoxBEVL1Cost', weight=0.25),
    iou_cost=dict(type='IoU3DCost', weight=0.25),
    iou_calculator=dict(type='mmdet3d.BboxOverlaps3D', coordinate='lidar'))


@TASK_UTILS.register_module()
class HungarianAssigner3D:
    """One-to-one assignment of predicted boxes to ground truth by the Hungarian algorithm.

    Args:
        cls_cost, reg_cost, iou_cost: the three cost terms (TASK_UTILS configs; BEVFusion's,
            ``ASSIGNER_DEFAULTS``, when not given).
        iou_calculator: 3D IoU of ``[N, 7]`` and ``[M, 7]`` boxes.
    """

    def __init__(self, cls_cost: dict | None = None, reg_cost: dict | None = None, iou_cost: dict | None = None,
                 iou_calculator: dict | None = None) -> None:
        d = ASSIGNER_DEFAULTS
        self.cls_cost = TASK_UTILS.build(cls_cost or d['cls_cost'])
        self.reg_cost = TASK_UTILS.build(reg_cost or d['reg_cost'])
        self.iou_cost = TASK_UTILS.build(iou_cost or d['iou_cost'])
        self.iou_calculator = TASK_UTILS.build(iou_calculator or d['iou_calculator'])

    def assign(self, boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor, cls_logits: Tensor,
               point_cloud_range) -> tuple[Tensor, Tensor]:
        """Args:
            boxes: ``[P, >=7]`` decoded predictions; gt_boxes: ``[G, >=7]``; gt_labels: ``[G]``.
            cls_logits: ``[P, num_classes]`` classification logits of the predictions.

        Returns:
            ``gt_index`` ``[P]`` (the matched ground truth, -1 for background) and ``iou`` ``[P]``
            (the 3D IoU with it, 0 for background).
        """
        num_preds, num_gts = boxes.shape[0], gt_boxes.shape[0]
        gt_index = boxes.new_full((num_preds,), -1, dtype=torch.long)
        iou_matched = boxes.new_zeros(num_preds)
        if num_gts == 0 or num_preds == 0:
            return gt_index, iou_matched
        cls = self.cls_cost(InstanceData(scores=cls_logits), InstanceData(labels=gt_labels))
        reg = self.reg_cost(boxes, gt_boxes, point_cloud_range)
        iou = self.iou_calculator(boxes[:, :7], gt_boxes[:, :7])
        cost = (cls + reg + self.iou_cost(iou)).detach().cpu().numpy()
        if not np.isfinite(cost).all():
            raise FloatingPointError('HungarianAssigner3D: the matching cost is not finite (non-finite predictions)')
        rows, cols = linear_sum_assignment(cost)
        rows = torch.as_tensor(rows, device=boxes.device, dtype=torch.long)
        cols = torch.as_tensor(cols, device=boxes.device, dtype=torch.long)
        gt_index[rows] = cols
        iou_matched[rows] = iou[rows, cols]
        return gt_index, iou_matched
