"""Evaluate a FULLER checkpoint (mmengine Runner): nuScenes mAP/NDS and map mIoU.

Prints one table for both tasks and writes every metric to ``<work_dir>/metrics.json`` (whole
or not at all, and only once evaluation finished: a stale one is removed first);
``--show-dir`` also saves a PNG per sample (BEV boxes and map masks, cameras with boxes).
``--drop-modality camera|lidar`` evaluates a camera+LiDAR model with that sensor failed: its
encoder is not run and its BEV map enters the fuser as zeros (``model.drop_modality``); the
metrics go to ``metrics_drop-<sensor>.json`` and the submission to ``nuscenes_det_drop-<sensor>/``.

Example:
    python tools/test.py CONFIG work_dirs/x/iter_300.pth --show-dir vis
    python tools/test.py CONFIG work_dirs/x/iter_300.pth --drop-modality camera
"""

import argparse
import os
import os.path as osp

from fuller.utils import (
    add_checkpoint_args,
    add_info_file_args,
    finish_distributed,
    format_metrics_table,
    freeze_imports,
    parse_launcher_args,
    quiet_third_party_warnings,
    write_json_atomic,
)

quiet_third_party_warnings()

from fuller.engine import FullerRunner, keep_submission_files, load_config, reported_as_exit  # noqa: E402


def set_map_regions(cfg, edges: list[float] | None = None, near_boxes: dict | None = None) -> None:
    """Give the test evaluator's BEVMapIoUMetric distance bands and/or near-box regions, and the
    config's map grid."""
    flag = '--map-iou-by-distance' if edges else '--map-iou-near-boxes'
    bound = cfg.get('geometry', {}).get('map_bound')
    if bound is None:
        raise SystemExit(f'test: {flag} needs geometry.map_bound in the config')
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
    metrics = [e for e in evaluators if e.get('type') == 'BEVMapIoUMetric']
    if not metrics:
        raise SystemExit(f"test: {flag}: the config's test_evaluator has no BEVMapIoUMetric")
    for m in metrics:
        if edges:
            m.update(distance_bands=list(edges))
        if near_boxes:
            m.update(near_boxes=dict(near_boxes))
        m.update(map_bound=dict(bound))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Test (and evaluate) a FULLER model')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='directory for the metrics JSON, the submission JSON and logs')
    p.add_argument('--show-dir', help='save PNG pictures of every sample here (relative: under the work dir)')
    p.add_argument('--show-interval', type=int, default=1, help='draw every n-th sample')
    p.add_argument('--score-thr', type=float, default=0.3, help='score threshold of boxes drawn')
    p.add_argument('--drop-modality', choices=('camera', 'lidar'),
                   help='evaluate with this sensor failed (its BEV map zeros); metrics_drop-<sensor>.json')
    p.add_argument('--map-iou-by-distance', type=float, nargs='+', metavar='M',
                   help='also score the map in distance bands from the ego with these edges, e.g. 15 30: '
                        'mIoU@0-15m, mIoU@15-30m, mIoU@30m+ (the grid from geometry.map_bound)')
    p.add_argument('--map-iou-near-boxes', nargs='+', metavar='CLASS',
                   help='also score the map next to ground-truth boxes of these classes and away from them, '
                        'e.g. car: mIoU@near-car-5m (cells within --near-radius of a box centre), mIoU@away-car-5m')
    p.add_argument('--near-radius', type=float, default=5.0,
                   help='metres from a box centre that count as near it (--map-iou-near-boxes; default 5)')
    add_checkpoint_args(p)
    add_info_file_args(p)
    return parse_launcher_args(p)


def main() -> None:
    args = parse_args()
    freeze_imports()  # the imports' objects out of the cycle collector's walks
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'test: checkpoint file not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher, tool='test')
    cfg.load_from = args.checkpoint
    cfg.load_partial = 'fragments' if args.load_fragments else args.load_partial
    cfg.trust_checkpoint = args.trust_checkpoint
    cfg.trust_info_files = args.trust_info_files
    cfg.test_config_in_log_dir = True  # keep the training config copy in the work dir as it is
    suffix = f'_drop-{args.drop_modality}' if args.drop_modality else ''
    if args.drop_modality:
        cfg.model.drop_modality = args.drop_modality
    if args.map_iou_by_distance or args.map_iou_near_boxes:
        set_map_regions(cfg, args.map_iou_by_distance,
                        args.map_iou_near_boxes and dict(classes=args.map_iou_near_boxes, radius=args.near_radius))
    # Metrics that write a submission (NuScenesDetMetric) keep it in the work dir.
    keep_submission_files(cfg, osp.join(cfg.work_dir, f'nuscenes_det{suffix}'))
    path = osp.join(cfg.work_dir, f'metrics{suffix}.json')
    if osp.isfile(path):  # a metrics file stands for a finished evaluation of this run: not a stale one
        os.remove(path)
    if args.show_dir:
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'BEVVisualizationHook']
        cfg.custom_hooks.append(dict(type='BEVVisualizationHook', show_dir=args.show_dir,
                                     interval=args.show_interval, score_thr=args.score_thr))
    with reported_as_exit(cfg, 'test'):
        runner = FullerRunner.from_cfg(cfg)
        metrics = runner.test()
    if runner.rank == 0:
        print(format_metrics_table(metrics), flush=True)
        write_json_atomic(path, {'config': args.config, 'checkpoint': args.checkpoint,
                                 'drop_modality': args.drop_modality, 'metrics': metrics}, indent=2)
        print(f'metrics written to {path}', flush=True)
    finish_distributed()


if __name__ == '__main__':
    main()
