"""What every benchmark shares: the machine it ran on, the tables it writes, interleaved timing,
and the batches it times."""

import argparse
import copy
import datetime
import json
import os
import os.path as osp
import platform
import sys

import torch

from fuller.utils.cli import REPO_ROOT
from fuller.utils.report import cpu_model

BENCHMARK_SCRIPT = osp.join(REPO_ROOT, 'tools', 'benchmark.py')  # sub-commands that time paths in fresh processes
# The model every benchmark times by default: the main job's (FULLER on the demo data).
DEMO_FULLER_CONFIG = osp.join('configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')


def machine_info(device: torch.device) -> dict:
    import mmcv
    import mmdet3d
    import mmengine
    import spconv

    info = {
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'python': platform.python_version(), 'torch': torch.__version__, 'mmengine': mmengine.__version__,
        'mmcv': mmcv.__version__, 'mmdet3d': mmdet3d.__version__, 'spconv': getattr(spconv, '__version__', '?'),
        'cpu': cpu_model(), 'cpu_count': os.cpu_count(),
        'torch_threads': torch.get_num_threads(), 'device': str(device),
    }
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def write_results(out_dir: str, name: str, title: str, info: dict, params: dict, header: list[str],
                  rows: list[list], notes: str = '', extra: dict | None = None) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, f'{name}.json'), 'w') as f:
        json.dump({'machine': info, 'params': params, 'header': header, 'rows': rows, **(extra or {})}, f, indent=2)
    fmt = [(f'{v:.3f}' if isinstance(v, float) else str(v)) for r in rows for v in r]
    it = iter(fmt)
    lines = [f'# {title}', '', f'`python tools/benchmark.py {" ".join(sys.argv[1:])}`', '',
             '| ' + ' | '.join(f'{k}: {v}' for k, v in info.items()) + ' |', '',
             'Parameters: ' + ', '.join(f'{k}={v}' for k, v in params.items()), '',
             '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(next(it) for _ in r) + ' |' for r in rows]
    if notes:
        lines += ['', notes]
    with open(osp.join(out_dir, f'{name}.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines[6:]))
    print(f'benchmark: wrote {osp.join(out_dir, name)}.{{json,md}}')


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _interleaved(fns: dict, timer, warmup: int, iters: int) -> dict[str, list]:
    """``timer(fn)`` for every variant in turn, repeated ``iters`` times after ``warmup`` rounds,
    so that slow drifts of the machine affect all variants alike."""
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for fn in fns.values():
            timer(fn)
    for _ in range(iters):
        for k, fn in fns.items():
            times[k].append(timer(fn))
    return times


# ---------------------------------------------------------------------------- step
def load_batch(cfg, batch_size: int, data_root: str | None = None) -> dict:
    """``batch_size`` training samples of the config's pipeline; ``data_root`` reads them from
    another nuScenes-format tree (e.g. the demo data for the nuScenes config). The pipeline's
    random augmentation is seeded: every process (``modules`` times each module in its own) gets
    the same samples."""
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import set_random_seed

    from fuller.engine import set_data_root
    from fuller.registry import DATASETS

    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    if data_root is not None:
        set_data_root(ds_cfg, data_root)
    dataset = DATASETS.build(ds_cfg)
    set_random_seed(0)  # random, numpy and torch
    return pseudo_collate([dataset[i % len(dataset)] for i in range(batch_size)])


def points_arg(value: str) -> int | str:
    """``--points``: a number of random points per sample, or ``real`` for the samples' own."""
    if value == 'real':
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"--points {value!r}: a positive number of points or 'real'")
    return n


def synthetic_batch(cfg, batch_size: int, n_points: int | str, data_root: str | None = None) -> dict:
    """Inputs of the config's sizes: points in range, random images, calibration of a real
    demo sample, boxes and map masks from that sample (so the losses are real). ``n_points='real'``
    keeps the samples' own points and images.

    Random points fill the range's volume, where a scan's lie on surfaces: far more of them get a
    voxel of their own (on the demo, 35000 random points make 30000 voxels, a real 68000-point
    scan 3000), so the sparse encoder's cost is the volume's, not a scan's."""
    batch = load_batch(cfg, batch_size, data_root)
    if n_points == 'real':
        return batch
    torch.manual_seed(0)
    pcr = torch.tensor(cfg.geometry.point_cloud_range) if cfg.model.encoders.get('lidar') else None
    if 'points' in batch['inputs'] and pcr is not None:
        pts = []
        for _ in range(batch_size):
            xyz = pcr[:3] + torch.rand(n_points, 3) * (pcr[3:] - pcr[:3])
            pts.append(torch.cat([xyz, torch.rand(n_points, 1) * 255, torch.zeros(n_points, 1)], 1))
        batch['inputs']['points'] = pts
    if 'imgs' in batch['inputs']:
        batch['inputs']['imgs'] = [torch.rand_like(x) * 255 for x in batch['inputs']['imgs']]
    return batch


def voxels_per_sample(model, data: dict) -> float | None:
    """Mean number of voxels the model's LiDAR encoder makes of each cloud of a preprocessed
    batch (None without one)."""
    encoders = getattr(model, 'encoders', None)
    lidar = encoders['lidar'] if encoders is not None and 'lidar' in encoders else None
    points = data['inputs'].get('points')
    if lidar is None or not hasattr(lidar, 'voxelize') or not points:
        return None
    return float(lidar.voxelize(points)[0].shape[0]) / len(points)


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: now; VmHWM: peak of this process image,
    unlike ru_maxrss, which a child inherits from the parent it was forked from)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')
