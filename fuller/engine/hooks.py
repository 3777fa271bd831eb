"""Runner hooks: a progress bar and the ``--show-dir`` pictures."""

import os
import os.path as osp
import sys

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from fuller.registry import HOOKS


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A tqdm progress bar over training iterations and validation/test batches (rank 0 only).

    Args:
        train: show it during training too (the logger still prints losses every interval).
        min_interval: seconds between refreshes; longer when output is not a terminal, so
            log files are not flooded.
    """

    priority = 'VERY_LOW'

    def __init__(self, train: bool = True, min_interval: float = 0.5) -> None:
        self.train = train
        self.min_interval = min_interval if sys.stderr.isatty() else max(min_interval, 30.0)
        self._bar = None

    def _open(self, total: int, desc: str, initial: int = 0) -> None:
        if not is_main_process():
            return
        from tqdm import tqdm
        self._close()
        self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=self.min_interval,
                         leave=False)

    def _step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def before_train(self, runner) -> None:
        if self.train:
            self._open(runner.max_iters, 'train', initial=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_train(self, runner) -> None:
        self._close()

    def before_val_epoch(self, runner) -> None:
        self._val_bar_of_train = self._bar
        self._bar = None
        self._open(len(runner.val_dataloader), 'val')

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._close()
        self._bar = getattr(self, '_val_bar_of_train', None)

    def before_test_epoch(self, runner) -> None:
        self._open(len(runner.test_dataloader), 'test')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._close()


def _map_extent_from_pipeline(pipeline: list) -> tuple:
    for t in pipeline:
        if t.get('type') == 'LoadBEVMapMask':
            xb, yb = t['xbound'], t['ybound']
            return (xb[0], xb[1], yb[0], yb[1])
    return (-50.0, 50.0, -50.0, 50.0)


@HOOKS.register_module()
class BEVVisualizationHook(Hook):
    """Save one PNG per tested sample (every ``interval``-th) under ``show_dir``: BEV points
    with ground-truth and predicted boxes, ground-truth and predicted map masks side by side,
    and the camera images with projected boxes. Set by ``tools/test.py --show-dir``.

    Args:
        show_dir: output directory (relative paths are under the work dir); ``None`` = off.
        interval: draw every ``interval``-th sample.
        score_thr: boxes shown above this score.
        max_samples: stop after this many pictures (``None``: no limit).
    """

    priority = 'NORMAL'

    def __init__(self, show_dir: str | None = None, interval: int = 1, score_thr: float = 0.3,
                 max_samples: int | None = None) -> None:
        self.show_dir = show_dir
        self.interval = max(1, int(interval))
        self.score_thr = score_thr
        self.max_samples = max_samples
        self._count = 0
        self._seen = 0

    def before_test(self, runner) -> None:
        if self.show_dir and not osp.isabs(self.show_dir):
            self.show_dir = osp.join(runner.work_dir, self.show_dir)
        if self.show_dir:
            os.makedirs(self.show_dir, exist_ok=True)
        self.map_extent = _map_extent_from_pipeline(runner.cfg.test_dataloader.dataset.pipeline)
        self.class_names = tuple(runner.test_dataloader.dataset.metainfo.get('classes', ()))
        self.map_classes = tuple(next((m.get('classes', ()) for m in _as_list(runner.cfg.get('test_evaluator'))
                                       if m.get('type') == 'BEVMapIoUMetric'), ()))

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if not self.show_dir or outputs is None:
            return
        from fuller.visualization import draw_sample

        inputs = data_batch['inputs']
        for i, sample in enumerate(outputs):
            self._seen += 1
            if (self._seen - 1) % self.interval or (self.max_samples is not None and self._count >= self.max_samples):
                continue
            meta = sample.metainfo
            pts = inputs['points'][i].cpu().numpy() if 'points' in inputs else None
            gt_boxes = pred_boxes = pred_scores = pred_labels = None
            if 'eval_ann_info' in sample and 'gt_bboxes_3d' in sample.eval_ann_info:
                gt_boxes = sample.eval_ann_info['gt_bboxes_3d'].tensor.cpu().numpy()
            elif 'gt_instances_3d' in sample and 'bboxes_3d' in sample.gt_instances_3d:
                gt_boxes = sample.gt_instances_3d.bboxes_3d.tensor.cpu().numpy()
            if 'pred_instances_3d' in sample:
                p = sample.pred_instances_3d
                keep = p.scores_3d >= self.score_thr
                pred_boxes = p.bboxes_3d.tensor[keep.to(p.bboxes_3d.tensor.device)].cpu().numpy()
                pred_scores = p.scores_3d[keep].cpu().numpy()
                pred_labels = p.labels_3d[keep.to(p.labels_3d.device)].cpu().numpy()
            imgs = lidar2img = img_aug = None
            if 'imgs' in inputs:
                imgs = inputs['imgs'][i].permute(0, 2, 3, 1).cpu().numpy()
                lidar_aug = np.asarray(meta.get('lidar_aug_matrix', np.eye(4)), dtype=np.float64)
                lidar2img = (np.asarray(meta['cam2img'], dtype=np.float64) @ np.asarray(meta['lidar2cam'], dtype=np.float64)
                             @ np.linalg.inv(lidar_aug))
                img_aug = np.asarray(meta['img_aug_matrix'], dtype=np.float64) if 'img_aug_matrix' in meta else None
            gt_map = sample.gt_map.cpu().numpy() if 'gt_map' in sample else None
            pred_map = sample.pred_map.float().cpu().numpy() if 'pred_map' in sample else None
            token = meta.get('token', f'{self._seen:06d}')
            draw_sample(osp.join(self.show_dir, f'{self._seen - 1:05d}_{token}.png'), points=pts, gt_boxes=gt_boxes,
                        pred_boxes=pred_boxes, gt_map=gt_map, pred_map=pred_map, map_extent=self.map_extent,
                        imgs=imgs, lidar2img=lidar2img, img_aug=img_aug, title=f'sample {token}',
                        map_classes=self.map_classes, pred_scores=pred_scores, pred_labels=pred_labels,
                        class_names=self.class_names)
            self._count += 1

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self.show_dir:
            runner.logger.info(f'BEVVisualizationHook: {self._count} pictures in {self.show_dir}')


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]

