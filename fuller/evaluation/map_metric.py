"""BEV map segmentation IoU (BEVFusion protocol)."""

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from fuller.registry import METRICS

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
    """

    default_prefix = 'map'

    def __init__(self, classes: tuple | None = None, thresholds: tuple = DEFAULT_THRESHOLDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self._classes = None if classes is None else tuple(classes)
        self.thresholds = tuple(thresholds)

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
            pred, gt = s['pred_map'], s['gt_map']
            self.results.append(map_iou_counts(pred.float(), gt.to(pred.device), self.thresholds))

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            MMLogger.get_current_instance().warning('BEVMapIoUMetric: no map predictions (no map head?); skipped')
            return {}
        counts = np.sum(results, axis=0)  # [K, T, 2]
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
        return out
