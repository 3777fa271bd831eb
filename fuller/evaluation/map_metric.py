"""BEV map segmentation IoU (BEVFusion protocol)."""

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from fuller.registry import METRICS
from fuller.utils.grid import bound_cells

from .meta import dataset_fact

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.35, 0.66, 0.05), 2).tolist())


def map_iou_counts(probs: torch.Tensor, gt: torch.Tensor, thresholds: tuple = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Intersection and union pixel counts per class and threshold.

    Args:
        probs: [K, H, W] predicted probabilities.
        gt: [K, H, W] binary ground truth.
        thresholds: T probability thresholds.

    Returns:
        int64 [K, T, 2] (intersection, union).
    """
    th = torch.as_tensor(thresholds, dtype=probs.dtype, device=probs.device).view(1, -1, 1, 1)
    pred = probs.unsqueeze(1) >= th  # [K, T, H, W]
    g = gt.bool().unsqueeze(1)
    inter = (pred & g).flatten(2).sum(-1)
    union = (pred | g).flatten(2).sum(-1)
    return torch.stack([inter, union], -1).cpu().numpy().astype(np.int64)


@METRICS.register_module()
class BEVMapIoUMetric(BaseMetric):
    """Per-class IoU at thresholds 0.35-0.65; each class scored at its best threshold.

    Only pixel counts are kept per sample, so memory does not grow with mask size, and the
    counts add up exactly across distributed ranks.

    Args:
        classes: map class names, in the head's output order; default: the dataset's
            ``metainfo['map_classes']`` (``dataset_meta``, set by the evaluation loop).
        thresholds: probability thresholds.
        distance_bands: optional band edges in metres, e.g. ``(15, 30)``: the IoUs are also
            computed over the cells whose centre lies at a distance from the ego (the map grid's
            origin) in ``[0, 15)``, ``[15, 30)`` and ``[30, inf)`` m, as ``IoU_<class>@0-15m`` and
            ``mIoU@0-15m`` (each class at its best threshold within the band). The overall IoUs
            are unchanged. ``tools/test.py --map-iou-by-distance 15 30`` sets it.
        near_boxes: optional ``dict(classes=('car',), radius=5.0)``: the IoUs are also computed
            over the cells whose centre lies within ``radius`` m (in the ground plane) of the centre
            of a ground-truth box of one of these detection classes, and over the other cells, as
            ``IoU_<class>@near-car-5m`` / ``@away-car-5m`` (and ``mIoU@...``): how much of a map
            class a model finds next to objects and away from them (a car park's lot next to its
            parked cars, say). The boxes are each sample's evaluation annotations
            (``eval_ann_info['gt_bboxes_3d']``, in the frame of the map grid, the LiDAR's);
            ``tools/test.py --map-iou-near-boxes car`` sets it.
        map_bound: ``dict(xbound=(min, max, step), ybound=...)`` of the ``[K, ny, nx]`` map grid
            (the config's ``geometry.map_bound``); needed with ``distance_bands`` and ``near_boxes``.
    """

    default_prefix = 'map'

    def __init__(self, classes: tuple | None = None, thresholds: tuple = DEFAULT_THRESHOLDS,
                 distance_bands: tuple | None = None, near_boxes: dict | None = None, map_bound: dict | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._classes = None if classes is None else tuple(classes)
        self.thresholds = tuple(thresholds)
        edges = [float(e) for e in (distance_bands or ())]
        if edges and (any(e <= 0 for e in edges) or edges != sorted(set(edges))):
            raise ValueError(f'BEVMapIoUMetric.distance_bands must be increasing positive distances (m), '
                             f'got {distance_bands!r}')
        if (edges or near_boxes) and not (map_bound and 'xbound' in map_bound and 'ybound' in map_bound):
            raise ValueError(f'BEVMapIoUMetric.{"distance_bands" if edges else "near_boxes"} needs '
                             "map_bound=dict(xbound=..., ybound=...), the config's geometry.map_bound")
        self.bands = list(zip([0.0] + edges, edges + [float('inf')])) if edges else []
        self.near_boxes = None
        if near_boxes:
            unknown = set(near_boxes) - {'classes', 'radius'}
            near_classes = tuple(near_boxes.get('classes') or ())
            radius = float(near_boxes.get('radius', 5.0))
            if unknown or not near_classes or radius <= 0:
                raise ValueError('BEVMapIoUMetric.near_boxes must be dict(classes=(names, ...), radius=metres > 0), '
                                 f'got {near_boxes!r}')
            self.near_boxes = dict(classes=near_classes, radius=radius)
        self.map_bound = map_bound
        self._centres = None
        self._band_cells = None

    def band_names(self) -> list[str]:
        """Names of the extra regions, in the order of their counts: distance bands, then near/away."""
        names = [f'{lo:g}-{hi:g}m' if np.isfinite(hi) else f'{lo:g}m+' for lo, hi in self.bands]
        if self.near_boxes:
            what = f'{"+".join(self.near_boxes["classes"])}-{self.near_boxes["radius"]:g}m'
            names += [f'near-{what}', f'away-{what}']
        return names

    def _cell_centres(self, shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """x [nx] and y [ny] of the map cells' centres (the map grid is [ny, nx])."""
        if self._centres is None or (len(self._centres[1]), len(self._centres[0])) != tuple(shape):
            (x0, _, dx), (y0, _, dy) = xb, yb = self.map_bound['xbound'], self.map_bound['ybound']
            nx, ny = bound_cells(xb), bound_cells(yb)
            if (ny, nx) != tuple(shape):
                raise ValueError(f'BEVMapIoUMetric: map_bound gives a {ny}x{nx} grid but the maps are '
                                 f'{shape[0]}x{shape[1]}')
            self._centres = (x0 + (torch.arange(nx, dtype=torch.float64) + 0.5) * dx,
                             y0 + (torch.arange(ny, dtype=torch.float64) + 0.5) * dy)
        return self._centres

    def _region_masks(self, sample: dict, shape: tuple, device) -> list[torch.Tensor]:
        """Boolean [ny, nx] masks of the extra regions (:meth:`band_names`) for one sample."""
        if not self.bands and not self.near_boxes:
            return []
        x, y = self._cell_centres(shape)
        masks = []
        if self.bands:
            if self._band_cells is None or self._band_cells[0].shape != tuple(shape):  # the same for every sample
                d = torch.hypot(y[:, None], x[None, :])
                self._band_cells = [(d >= lo) & (d < hi) for lo, hi in self.bands]
            masks += self._band_cells
        if self.near_boxes:
            centres = self._box_centres(sample)
            near = torch.zeros(shape, dtype=torch.bool)
            if len(centres):
                dx = x[None, None, :] - centres[:, 0, None, None]
                dy = y[None, :, None] - centres[:, 1, None, None]
                near = (torch.hypot(dx, dy) <= self.near_boxes['radius']).any(0)
            masks += [near, ~near]
        return [m.to(device) for m in masks]

    def _box_centres(self, sample: dict) -> torch.Tensor:
        """[N, 2] ground-plane centres of the sample's ground-truth boxes of the ``near_boxes`` classes."""
        ann = sample.get('eval_ann_info')
        if not ann or 'gt_bboxes_3d' not in ann or 'gt_labels_3d' not in ann:
            raise KeyError('BEVMapIoUMetric.near_boxes: a sample has no eval_ann_info with gt_bboxes_3d and '
                           'gt_labels_3d (the test pipeline must load the annotations: the dataset in test_mode)')
        det_classes = list(dataset_fact(self, 'classes'))
        missing = [c for c in self.near_boxes['classes'] if c not in det_classes]
        if missing:
            raise KeyError(f'BEVMapIoUMetric.near_boxes: {missing} not among the dataset\'s classes {det_classes}')
        wanted = [det_classes.index(c) for c in self.near_boxes['classes']]
        boxes = ann['gt_bboxes_3d']
        arr = np.asarray(boxes.tensor if hasattr(boxes, 'tensor') else boxes, np.float64)
        xy = torch.from_numpy(arr.reshape(len(arr), -1)[:, :2]) if arr.size else torch.zeros(0, 2, dtype=torch.float64)
        labels = torch.as_tensor(np.asarray(ann['gt_labels_3d'], np.int64)).reshape(-1)
        return xy[torch.isin(labels, torch.tensor(wanted))]

    @property
    def classes(self) -> tuple:
        """The ``classes`` argument, else the dataset's ``metainfo['map_classes']``."""
        if self._classes is None:
            self._classes = tuple(dataset_fact(self, 'map_classes'))
        return self._classes

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            if 'pred_map' not in s:
                continue
            if 'gt_map' not in s:
                raise KeyError('BEVMapIoUMetric: a sample has pred_map but no gt_map; add LoadBEVMapMask to the '
                               'test pipeline')
            pred, gt = s['pred_map'].float(), s['gt_map'].to(s['pred_map'].device)
            counts = [map_iou_counts(pred, gt, self.thresholds)]
            for m in self._region_masks(s, tuple(pred.shape[-2:]), pred.device):
                # outside the region: no prediction (probability below every threshold), no truth
                counts.append(map_iou_counts(pred * m, gt.bool() & m, self.thresholds))
            self.results.append(np.stack(counts))

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            MMLogger.get_current_instance().warning('BEVMapIoUMetric: no map predictions (no map head?); skipped')
            return {}
        counts = np.sum(results, axis=0)  # [1 + bands, K, T, 2]
        counts, per_band = counts[0], counts[1:]
        if len(counts) != len(self.classes):
            raise ValueError(f'BEVMapIoUMetric: the predicted map has {len(counts)} classes but the metric has '
                             f'{len(self.classes)}: {self.classes}')
        iou = counts[..., 0] / np.maximum(counts[..., 1], 1)
        best = iou.max(1)
        out = {f'IoU_{c}': float(v) for c, v in zip(self.classes, best)}
        out['mIoU'] = float(best.mean())
        # The threshold each class is scored at (pictures draw the predicted map with it).
        out.update({f'thr_{c}': float(self.thresholds[int(iou[i].argmax())]) for i, c in enumerate(self.classes)})
        logger = MMLogger.get_current_instance()
        rows = '\n'.join(f'  {c:<14} {v:.4f}  (thr {self.thresholds[int(iou[i].argmax())]})'
                         for i, (c, v) in enumerate(zip(self.classes, best)))
        logger.info(f'BEV map segmentation IoU\n{rows}\n  {"mIoU":<14} {best.mean():.4f}')
        for name, c in zip(self.band_names(), per_band):
            band = (c[..., 0] / np.maximum(c[..., 1], 1)).max(1)
            out.update({f'IoU_{k}@{name}': float(v) for k, v in zip(self.classes, band)})
            out[f'mIoU@{name}'] = float(band.mean())
            where = f'at {name}' if name[0].isdigit() else name
            logger.info(f'BEV map IoU {where}: ' + ', '.join(f'{k} {v:.4f}' for k, v in zip(self.classes, band))
                        + f'; mIoU {band.mean():.4f}')
        return out
