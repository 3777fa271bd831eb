"""Curves of one training run, read from mmengine's ``vis_data/scalars.json``."""

import glob
import json
import os
import os.path as osp

import numpy as np

from .bev import plot_curves


def read_scalars(run_dir: str) -> dict[str, np.ndarray]:
    """Per-iteration training scalars of the run in ``run_dir`` (the newest
    ``<timestamp>/vis_data/scalars.json`` holding training losses; a resumed run's earlier
    files are joined in iteration order)."""
    rows: dict[int, dict] = {}
    for path in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    if 'loss' in r and 'step' in r:
                        rows[int(r['step'])] = r
    ordered = [rows[k] for k in sorted(rows)]
    keys = sorted({k for r in ordered for k in r})
    return {k: np.array([r.get(k, np.nan) if isinstance(r.get(k, np.nan), (int, float)) else np.nan
                         for r in ordered], dtype=np.float64) for k in keys}


def _xy(s: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    y = s[key]
    ok = np.isfinite(y)
    return s['step'][ok], y[ok]


def plot_run(run_dir: str, out_dir: str | None = None, smooth: int = 1) -> list[str]:
    """Draw a run's curves into PNGs under ``out_dir`` (default ``<run_dir>/curves``).

    Figures (each only if the run logged its scalars): ``losses.png`` (total and every task
    loss, log scale), ``lr.png``, ``task_gradients.png`` (norm of each task's gradient at the
    shared feature and of the combined one), ``task_cosine.png`` (cosine between the task
    gradients; below 0 = conflict), ``rule_weights.png`` (the inter-task rule's weights and
    any loss weights), ``modality_ratio.png`` (camera/LiDAR gradient-norm ratio at the fuser
    before and after intra calibration).

    Returns:
        The paths written.

    Raises:
        FileNotFoundError: the run has no training scalars.
    """
    s = read_scalars(run_dir)
    if 'step' not in s or not len(s['step']):
        raise FileNotFoundError(f'no training scalars (*/vis_data/scalars.json with losses) under {run_dir}')
    out_dir = out_dir or osp.join(run_dir, 'curves')
    os.makedirs(out_dir, exist_ok=True)
    name = osp.basename(osp.normpath(run_dir))
    figures = {
        'losses': ('loss', True, None, [k for k in s if k == 'loss' or ('.loss' in k and not k.startswith('calib/'))]),
        'lr': ('learning rate', False, None, [k for k in ('lr', 'base_lr') if k in s][:1]),
        'task_gradients': ('gradient norm at the shared feature', True, None,
                           sorted(k for k in s if k.startswith('calib/grad_norm_'))),
        'task_cosine': ('cosine between task gradients', False, 0.0, [k for k in ('calib/cos',) if k in s]),
        'rule_weights': ('weight', False, None, sorted(k for k in s if k.startswith(('calib/weight_',
                                                                                    'calib/loss_weight_')))),
        'modality_ratio': ('camera / LiDAR gradient norm', True, 1.0,
                           sorted(k for k in s if k.startswith('calib/cam_lidar_ratio'))),
    }
    written = []
    for fig, (ylabel, logy, hline, keys) in figures.items():
        keys = [k for k in keys if np.isfinite(s[k]).any()]
        if not keys:
            continue
        series = {'': {k.replace('calib/', ''): _xy(s, k) for k in keys}}
        path = osp.join(out_dir, f'{fig}.png')
        positive = all((s[k][np.isfinite(s[k])] > 0).all() for k in keys)
        plot_curves(path, series, ylabel, title=f'{name}: {fig.replace("_", " ")}', hline=hline,
                    logy=logy and positive, smooth=smooth)
        written.append(path)
    return written
