"""Runner hooks: a progress bar, the training curves, the ``--show-dir`` pictures and the epoch
of epoch-dependent pipeline steps."""

import os
import os.path as osp
import sys

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from fuller.registry import HOOKS
from fuller.utils import usable_cpus


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A tqdm progress bar over training iterations and validation/test batches (rank 0 only,
    on a terminal only; log lines clear and redraw it, see :class:`~fuller.engine.FullerRunner`).

    Args:
        train: show it during training too (the logger still prints losses every interval).
        min_interval: seconds between refreshes.
    """

    priority = 'VERY_LOW'

    def __init__(self, train: bool = True, min_interval: float = 0.5) -> None:
        self.train = train
        self.min_interval = min_interval
        self._bar = None

    def _open(self, total: int, desc: str, initial: int = 0) -> None:
        # Off when stderr is not a terminal (a log file): the logger's lines carry the progress
        # and the ETA there, and a bar would fill the file with carriage returns.
        if not is_main_process() or not sys.stderr.isatty():
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


@HOOKS.register_module()
class CurvesHook(Hook):
    """Tell the user where a run's diagnostics are, and draw its curves into PNGs at the end.

    Before training it logs the TensorBoard command for the work dir; after training (rank 0)
    it draws ``<work_dir>/curves/*.png`` with :func:`~fuller.visualization.curves.plot_run`
    (losses, learning rate, task-gradient norms and cosine, rule weights, camera/LiDAR ratio);
    ``tools/analysis/plot_curves.py`` draws the same for any run, finished or not.

    Args:
        smooth: moving average over this many logged points.
    """

    priority = 'LOWEST'

    def __init__(self, smooth: int = 1) -> None:
        self.smooth = smooth

    def before_train(self, runner) -> None:
        if is_main_process():
            runner.logger.info(f'diagnostics: every logged scalar is in {runner.log_dir}/vis_data/scalars.json; '
                               f'view them with: tensorboard --logdir {runner.work_dir}')

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        from fuller.visualization.curves import plot_run

        try:
            paths = plot_run(runner.work_dir, osp.join(runner.work_dir, 'curves'), self.smooth)
        except FileNotFoundError as e:
            runner.logger.warning(f'CurvesHook: {e}')
            return
        runner.logger.info(f'curves: {len(paths)} PNGs in {osp.join(runner.work_dir, "curves")}')


@HOOKS.register_module()
class BEVVisualizationHook(Hook):
    """Save one PNG per tested sample (every ``interval``-th) under ``show_dir``: BEV points
    with ground-truth and predicted boxes and the ego vehicle, ground-truth and predicted map
    masks side by side, and the six cameras (titled, in rig order) with projected boxes. Set
    by ``tools/test.py --show-dir``.

    The predicted map is drawn at the threshold the map metric chose for each class, which is
    known only once the whole split is scored: each sample's arrays wait in
    ``<show_dir>/.pending`` until the end of the test epoch, then the pictures are drawn.

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
        if not self.show_dir:
            return
        self._pending = osp.join(self.show_dir, '.pending', f'rank{runner.rank}')
        os.makedirs(self._pending, exist_ok=True)
        # Everything about the data comes from the built dataset: its metainfo (classes, map
        # classes, cameras) and the geometry it was built with (the map grid).
        dataset = runner.test_dataloader.dataset
        meta = dataset.metainfo
        map_bound = getattr(dataset, 'geometry', {}).get('map_bound')
        if map_bound is None:
            raise KeyError(f'BEVVisualizationHook: the test dataset ({type(dataset).__name__}) has no '
                           f'geometry.map_bound; state the geometry at the top level of the config')
        xb, yb = map_bound['xbound'], map_bound['ybound']
        self.map_extent = (xb[0], xb[1], yb[0], yb[1])
        pc = dataset.geometry.get('point_cloud_range')
        self.bev_range = max(abs(v) for v in ((pc[0], pc[1], pc[3], pc[4]) if pc else self.map_extent))
        self.class_names = tuple(meta.get('classes', ()))
        self.map_classes = tuple(meta.get('map_classes', ()))
        self.cam_names = tuple(meta['cameras']) if 'cameras' in meta else None

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if not self.show_dir or outputs is None:
            return
        inputs = data_batch['inputs']
        for i, sample in enumerate(outputs):
            self._seen += 1
            if (self._seen - 1) % self.interval or (self.max_samples is not None and self._count >= self.max_samples):
                continue
            self._count += 1
            arrays = self._sample_arrays(inputs, i, sample)
            token = sample.metainfo.get('token', f'{self._seen:06d}')
            np.savez(osp.join(self._pending, f'{self._seen - 1:05d}_{token}.npz'), **arrays)

    def _sample_arrays(self, inputs: dict, i: int, sample) -> dict:
        meta = sample.metainfo
        out = {}
        if 'points' in inputs:
            out['points'] = inputs['points'][i][:, :2].cpu().numpy()
        if 'eval_ann_info' in sample and 'gt_bboxes_3d' in sample.eval_ann_info:
            out['gt_boxes'] = sample.eval_ann_info['gt_bboxes_3d'].tensor.cpu().numpy()
        elif 'gt_instances_3d' in sample and 'bboxes_3d' in sample.gt_instances_3d:
            out['gt_boxes'] = sample.gt_instances_3d.bboxes_3d.tensor.cpu().numpy()
        if 'pred_instances_3d' in sample:
            p = sample.pred_instances_3d
            keep = (p.scores_3d >= self.score_thr).cpu()
            out['pred_boxes'] = p.bboxes_3d.tensor.cpu()[keep].numpy()
            out['pred_scores'] = p.scores_3d.cpu()[keep].numpy()
            out['pred_labels'] = p.labels_3d.cpu()[keep].numpy()
        lidar_aug = np.asarray(meta.get('lidar_aug_matrix', np.eye(4)), dtype=np.float64)
        if 'lidar2cam' in meta:
            lidar2cam = np.asarray(meta['lidar2cam'], dtype=np.float64)
            front = self.cam_names.index('CAM_FRONT') if self.cam_names and 'CAM_FRONT' in self.cam_names else 0
            out['ego_forward'] = (lidar_aug[:3, :3] @ np.linalg.inv(lidar2cam[front])[:3, :3] @ [0.0, 0.0, 1.0])[:2]
        if 'imgs' in inputs:
            out['imgs'] = np.clip(inputs['imgs'][i].permute(0, 2, 3, 1).cpu().numpy(), 0, 255).astype(np.uint8)
            out['lidar2img'] = (np.asarray(meta['cam2img'], dtype=np.float64) @ np.asarray(meta['lidar2cam'], np.float64)
                                @ np.linalg.inv(lidar_aug))
            if 'img_aug_matrix' in meta:
                out['img_aug'] = np.asarray(meta['img_aug_matrix'], dtype=np.float64)
        if 'gt_map' in sample:
            out['gt_map'] = sample.gt_map.cpu().numpy().astype(bool)
        if 'pred_map' in sample:
            out['pred_map'] = sample.pred_map.float().cpu().numpy().astype(np.float16)
        return out

    def after_test_epoch(self, runner, metrics=None) -> None:
        if not self.show_dir:
            return
        metrics = metrics or {}
        thr = [metrics.get(f'map/thr_{c}', 0.5) for c in self.map_classes] if self.map_classes else 0.5
        files = sorted(f for f in os.listdir(self._pending) if f.endswith('.npz'))
        jobs = [(osp.join(self._pending, name), osp.join(self.show_dir, name[:-4] + '.png'),
                 dict(map_classes=self.map_classes, class_names=self.class_names, cam_names=self.cam_names,
                      map_extent=self.map_extent, bev_range=self.bev_range, map_threshold=thr,
                      title=f'sample {name[6:-4]}')) for name in files]
        procs = picture_processes(len(jobs), runner.world_size)
        if procs > 1:
            import multiprocessing

            import fuller.visualization  # noqa: F401  (imported once, here, for every drawer)

            # Forked drawers share the parent's imports; they use numpy and matplotlib only
            # (no torch), and leave without the interpreter's teardown.
            with multiprocessing.get_context('fork').Pool(procs) as pool:
                pool.starmap(_draw_pending, jobs, chunksize=1)
        else:
            for job in jobs:
                _draw_pending(*job)
        os.rmdir(self._pending)
        try:
            os.rmdir(osp.dirname(self._pending))
        except OSError:
            pass  # another rank's pictures are still pending
        runner.logger.info(f'BEVVisualizationHook: {len(files)} pictures in {self.show_dir}')


def picture_processes(n_pictures: int, world_size: int = 1) -> int:
    """How many processes draw the test pictures: one per CPU this process may use (its share
    when ``world_size`` ranks draw theirs at once), at most one per picture. Matplotlib draws
    on one core, 0.45 s for a demo picture on a 2-core Zen 5 EPYC, while the rest of the
    machine waits: 12 pictures took 5.3 s in one process, 2.8 s in two. One process where
    ``fork`` is missing or unsafe (Windows; macOS, whose system libraries do not survive it)."""
    if n_pictures < 2 or not hasattr(os, 'fork') or sys.platform == 'darwin':
        return 1
    return max(1, min(n_pictures, usable_cpus() // max(1, world_size)))


def _draw_pending(path: str, out_path: str, kwargs: dict) -> None:
    """Draw one picture from the arrays :class:`BEVVisualizationHook` left at ``path``, then
    remove them."""
    from fuller.visualization import SampleView, draw_sample

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    pred_map = arrays.pop('pred_map', None)
    view = SampleView(pred_map=None if pred_map is None else pred_map.astype(np.float32), **arrays)
    draw_sample(out_path, view, **kwargs)
    os.remove(path)


def _train_pipeline_steps(dataset) -> list:
    """The steps of a (possibly wrapped: CBGS, repeat) train dataset's pipeline."""
    while not hasattr(dataset, 'pipeline') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
    return list(getattr(getattr(dataset, 'pipeline', None), 'transforms', []))


@HOOKS.register_module()
class PipelineEpochHook(Hook):
    """Tell the train pipeline's epoch-dependent steps (those with ``set_epoch``, e.g.
    :class:`~fuller.datasets.transforms.ObjectPaste`'s ``stop_epoch``) the epoch the data
    loader is about to serve.

    Data workers hold copies of the pipeline made when the loader's iterator starts, so a step
    whose behaviour changes gets fresh workers: for persistent workers the loader's iterator is
    dropped (mmdet's ``PipelineSwitchHook`` does the same) and restarts at the epoch's first
    batch. In an epoch-based loop the epoch is the runner's; in an iteration-based one it is
    iterations // batches per pass over the data, switched when a pass ends. A resumed run gets
    the state of the epoch it resumes in. It also warns when GT-paste is on in a pipeline that
    loads camera images (pasted objects are LiDAR-only: see ObjectPaste).
    """

    priority = 'NORMAL'

    def _apply(self, runner, epoch: int, started: bool) -> None:
        steps = [t for t in _train_pipeline_steps(runner.train_dataloader.dataset) if hasattr(t, 'set_epoch')]
        changed = [type(t).__name__ for t in steps if t.set_epoch(epoch)]
        if not changed:
            return
        runner.logger.info(f'epoch {epoch}: {", ".join(changed)} switched '
                           f'({"; ".join(repr(t) for t in steps)}); data workers restart')
        loader = runner.train_loop.dataloader
        loader._iterator = None  # persistent workers: a new iterator gets new workers with the new state
        it = getattr(runner.train_loop, 'dataloader_iterator', None)
        if started and it is not None:  # an iteration-based loop starts its iterator when it is built
            it._iterator = iter(loader)

    def before_train(self, runner) -> None:
        steps = _train_pipeline_steps(runner.train_dataloader.dataset)
        names = {type(t).__name__ for t in steps}
        if any(getattr(t, 'active', False) for t in steps if type(t).__name__ == 'ObjectPaste') and \
                'LoadMultiViewImages' in names:
            runner.logger.warning('GT-paste (ObjectPaste) is on in a pipeline that loads camera images: pasted objects '
                                  'are in the LiDAR points and the boxes, not in the images (BEVFusion pastes only in its '
                                  'LiDAR-only stage)')
        self._by_epoch = not hasattr(runner.train_loop, 'dataloader_iterator')
        self._passes = max(len(runner.train_loop.dataloader), 1)
        epoch = runner.epoch if self._by_epoch else runner.iter // self._passes
        self._apply(runner, epoch, started=not self._by_epoch)

    def before_train_epoch(self, runner) -> None:
        if self._by_epoch:
            self._apply(runner, runner.epoch, started=False)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # the last batch of a pass: the next fetch starts a new iterator, which picks up the state
        if not self._by_epoch and (runner.iter + 1) % self._passes == 0:
            self._apply(runner, (runner.iter + 1) // self._passes, started=False)
