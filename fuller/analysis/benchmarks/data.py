"""``benchmark.py data``: training pipeline samples/s per worker, next to what one GPU consumes.

Each config's train dataset (its whole pipeline: loading, GT-paste, augmentation, map
rasterization, packing) is timed sample by sample in this process, as one data worker runs it; a
CBGS wrapper only re-indexes the dataset, so the dataset is timed without it. ``--data-root``
points the configs at another nuScenes-format root; ``--keyframe DIR`` builds a scratch root from
a single real keyframe folder (links to its files, the info files and the GT database of
tools/create_data.py) and times every config on it.

For BEVFusion's nuScenes stages the table also states what one GPU consumes: the samples of the
stage (epochs x CBGS samples per epoch) over the GPU-seconds BEVFusion reports for it, and so the
workers per GPU that keep up (consumption / samples/s per worker).
"""

import os
import os.path as osp
import statistics
import time

import numpy as np
import torch

from .common import machine_info, write_results

# nuScenes train split: 28,130 keyframes; CBGS makes an epoch about 4.5x of them (the nuScenes
# dataset config's note: every class gets the same number of (sample, class) draws).
NUSCENES_CBGS_EPOCH = 4.5 * 28130
# BEVFusion's reported training times on 8 NVIDIA A6000 (mit-han-lab/bevfusion issue #279: ~25 h
# LiDAR-only pretraining, ~10 h fusion fine-tuning; issues #3 and #76: detection ~35 h in all,
# segmentation ~25 h): config stem -> (epochs, GPU-hours).
BEVFUSION_GPU_HOURS = {
    'bevfusion-det_l_voxel0075_8x4-20e_nuscenes': (20, 25 * 8),
    'bevfusion-det_lc_swint_8x4-6e_nuscenes': (6, 10 * 8),
    'bevfusion-det_lc_swint_8x4-6e_nuscenes-staged': (6, 10 * 8),
    'bevfusion-map_lc_swint_8x4-20e_nuscenes': (20, 25 * 8),
    'bevfusion-map_lc_swint_8x4-20e_nuscenes-staged': (20, 25 * 8),
}


def gpu_consumption(config: str) -> float | None:
    """Samples/s one A6000 consumed in BEVFusion's training of this stage (None: not a BEVFusion stage)."""
    stem = osp.splitext(osp.basename(config))[0]
    if stem not in BEVFUSION_GPU_HOURS:
        return None
    epochs, gpu_hours = BEVFUSION_GPU_HOURS[stem]
    return epochs * NUSCENES_CBGS_EPOCH / (gpu_hours * 3600)


def keyframe_root(src: str, dst: str) -> str:
    """A nuScenes-format root in ``dst`` made of the keyframe folder ``src`` (its samples, maps and
    tables linked), with info files and the GT database; reused if already there."""
    from fuller.datasets.create_infos import create_nuscenes_infos
    from fuller.datasets.gt_database import create_gt_database

    src, dst = osp.abspath(src), osp.abspath(dst)
    os.makedirs(dst, exist_ok=True)
    for name in ('samples', 'maps', 'v1.0-mini'):
        link = osp.join(dst, name)
        if not osp.exists(link):
            os.symlink(osp.join(src, name), link)
    if not osp.isfile(osp.join(dst, 'nuscenes_dbinfos_train.pkl')):
        written = create_nuscenes_infos(dst, 'v1.0-mini', osp.join(dst, 'nuscenes'), max_sweeps=10)
        create_gt_database(dst, written['train'], 'nuscenes', progress=False)
    return dst.rstrip('/') + '/'


def _time_config(config: str, data_root: str | None, warmup: int, iters: int) -> list:
    from mmengine.registry import init_default_scope

    from fuller.engine import base_dataset, read_config, set_data_root
    from fuller.registry import DATASETS

    cfg = read_config(config)
    inner = base_dataset(cfg.train_dataloader.dataset)
    if data_root:
        set_data_root(inner, data_root)
    init_default_scope('fuller')
    # the dataset itself: a CBGS wrapper only re-indexes it (and cannot be built on a root lacking a class)
    dataset = DATASETS.build(inner)
    np.random.seed(0)
    for i in range(warmup):
        dataset[i % len(dataset)]
    per, points, boxes = [], [], []
    for i in range(iters):
        t0 = time.perf_counter()
        item = dataset[(warmup + i) % len(dataset)]
        per.append(time.perf_counter() - t0)
        points.append(len(item['inputs']['points']))
        boxes.append(len(item['data_samples'].gt_instances_3d.labels_3d))
    med = statistics.median(per)
    steps = [t['type'].split('.')[-1] for t in inner.pipeline]
    demand = gpu_consumption(config)
    return [osp.basename(config), inner.data_root, len(dataset), cfg.train_dataloader.dataset.type.endswith('CBGSDataset'),
            'ObjectPaste' in steps, 'LoadMultiViewImages' in steps,
            int(statistics.median(points)), int(statistics.median(boxes)), 1000 * statistics.mean(per), 1000 * med,
            1 / med, '-' if demand is None else demand, '-' if demand is None else demand * med]


def bench_data(args) -> None:
    data_root = args.data_root
    if args.keyframe:
        data_root = keyframe_root(args.keyframe, osp.join('work_dirs', 'benchmarks', 'keyframe_root'))
    rows = [_time_config(c, data_root, args.warmup, args.iters) for c in args.config]
    write_results(args.out, args.name or 'data', 'Training data pipeline, one worker, next to one GPU\'s consumption',
                  machine_info(torch.device('cpu')),
                  {'data_root': data_root or 'the configs\'', 'keyframe': args.keyframe, 'warmup': args.warmup,
                   'iters': args.iters},
                  ['config', 'data root', 'samples in split', 'CBGS', 'GT-paste', 'cameras', 'points/sample',
                   'boxes/sample', 'mean ms/sample', 'median ms/sample', 'samples/s/worker',
                   'GPU consumes samples/s', 'workers per GPU'], rows,
                  'One worker process = one pipeline; with `num_workers=k` the loader delivers about k times '
                  'this rate while CPU cores are free. "GPU consumes": BEVFusion\'s stage on one NVIDIA A6000, '
                  f'epochs x {NUSCENES_CBGS_EPOCH:.0f} CBGS samples per epoch over its reported GPU-hours '
                  '(mit-han-lab/bevfusion issues #279, #3, #76: LiDAR-only 25 h, fusion fine-tuning 10 h, map 25 h '
                  'on 8 GPUs); "workers per GPU" = that rate / samples/s/worker, the `num_workers` below which the '
                  'GPU waits for data (this machine\'s cores, one worker each). No FLOP columns: the pipeline '
                  'decodes, filters and augments (memory and integer work, not floating-point arithmetic); its '
                  'limit is the consumption column.')
