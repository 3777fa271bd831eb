"""Train a FULLER model (mmengine Runner).

Example:
    python tools/train.py configs/fuller/fuller_lc_r18-tiny_1x2-450it_nuscenes-demo-det-map.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume --cfg-options train_cfg.max_iters=100
"""

import argparse
import os.path as osp

import torch
from mmengine.runner import Runner

from fuller.engine import find_latest_good_checkpoint
from fuller.utils import load_config, parse_launcher_args


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Train a FULLER model')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='directory for logs and checkpoints')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision')
    p.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default='float16',
                   help='half-precision type under --amp (float16 uses a dynamic loss scale)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or from the latest one in the work dir if no path is given')
    return parse_launcher_args(p)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher, tool='train')
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper.startswith('Calibrated'):
            # Task gradients from scaled losses, unscaled in fp32 before calibration.
            cfg.optim_wrapper.type = 'CalibratedAmpOptimWrapper'
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        cfg.optim_wrapper.dtype = args.amp_dtype
        if args.amp_dtype == 'float16' and not torch.cuda.is_available():
            print('train: --amp with float16 on CPU: half-precision CPU kernels are slow (over 10x slower than '
                  'fp32 on the demo model); use --amp-dtype bfloat16 on CPU', flush=True)
    if args.resume == 'auto':
        latest = find_latest_good_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if latest is None:
            print(f'train: --resume: no usable checkpoint in {cfg.work_dir}; starting from scratch', flush=True)
        else:
            print(f'train: resuming from {latest}', flush=True)
        cfg.resume, cfg.load_from = latest is not None, latest
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
