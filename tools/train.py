"""Train a FULLER model (mmengine Runner).

Example:
    python tools/train.py configs/fuller/fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume --cfg-options train_cfg.max_iters=100
    python tools/train.py CONFIG --load-from other.pth --load-partial --wandb
"""

import argparse
import os.path as osp

from fuller.utils import (
    add_checkpoint_args,
    add_info_file_args,
    auto_precision,
    finish_distributed,
    freeze_imports,
    parse_launcher_args,
    quiet_third_party_warnings,
)

quiet_third_party_warnings()

import torch  # noqa: E402

from fuller.engine import (  # noqa: E402
    FullerRunner,
    find_latest_good_checkpoint,
    load_config,
    reported_as_exit,
    work_dir_lock,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Train a FULLER model')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='directory for logs and checkpoints')
    p.add_argument('--amp', nargs='?', const='on', choices=['on', 'auto', 'off'],
                   help="automatic mixed precision; '--amp auto': bf16 where the hardware has native bf16 units "
                        '(CUDA with bf16, AVX-512 BF16 or AMX CPUs), fp32 elsewhere, said in the log (the demo '
                        "configs' default: optim_wrapper.amp='auto'); '--amp off': fp32 whatever the config says")
    p.add_argument('--amp-dtype', choices=['float16', 'bfloat16'],
                   help='half-precision type under --amp (default: float16 with a dynamic loss scale on CUDA, '
                        'bfloat16 on CPU; float16 is refused on CPU)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from this checkpoint, or from the latest one in the work dir if no path is given')
    p.add_argument('--load-from', help='initialise the model from this checkpoint (weights only; see --load-partial)')
    p.add_argument('--wandb', nargs='?', const='offline', choices=['offline', 'online'],
                   help='also log to Weights & Biases (default mode: offline, synced later with `wandb sync`)')
    add_checkpoint_args(p)
    add_info_file_args(p)
    return parse_launcher_args(p)


def _apply_amp_flags(cfg, args) -> None:
    """--amp off / on / auto onto the config's optimizer wrapper, before the config is resolved
    (the demo model's channels_last='bf16' follows the precision chosen here)."""
    if args.amp == 'off':
        if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'OptimWrapper'
            cfg.optim_wrapper.pop('dtype', None)
        if 'amp' in cfg.optim_wrapper:
            cfg.optim_wrapper.amp = None
    elif args.amp:
        # The project's guarded wrappers do AMP themselves: the non-finite-step guard, skip
        # counting and max_consecutive_skips hold under AMP as without it.
        if cfg.optim_wrapper.get('type', 'OptimWrapper') in ('OptimWrapper', 'AmpOptimWrapper'):
            cfg.optim_wrapper.type = 'GuardedOptimWrapper'
        cfg.optim_wrapper.amp = 'auto' if args.amp == 'auto' else args.amp_dtype
        if args.amp == 'on' and not torch.cuda.is_available():
            print(f'train: --amp {args.amp_dtype} on CPU: on CPUs without native half-precision units it is '
                  'slower than fp32 (measured: docs/benchmarks/train_demo_cpu.md); check yours with '
                  'python tools/benchmark.py train --dtypes fp32 bf16', flush=True)


def main() -> None:
    args = parse_args()
    freeze_imports()  # the imports' objects out of the cycle collector's walks
    if args.amp in ('auto', 'off') and args.amp_dtype:
        raise SystemExit(f'train: --amp {args.amp} chooses the precision itself; give --amp --amp-dtype D to choose it')
    if args.amp == 'auto':
        dtype, why = auto_precision()
        print(f'train: --amp auto: {dtype or "fp32"}, since {why}', flush=True)
    if args.amp == 'on' and not torch.cuda.is_available():
        if args.amp_dtype == 'float16':
            raise SystemExit('train: --amp-dtype float16 on CPU is refused: PyTorch has few fp16 CPU kernels and the '
                             'sparse encoder none, so one demo iteration took 212 s and its gradient norm was NaN; '
                             'use --amp-dtype bfloat16 (or drop --amp)')
        args.amp_dtype = 'bfloat16'
    args.amp_dtype = args.amp_dtype or 'float16'
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher, tool='train',
                      edit=lambda c: _apply_amp_flags(c, args))
    cfg.load_partial = 'fragments' if args.load_fragments else args.load_partial
    cfg.trust_checkpoint = args.trust_checkpoint
    cfg.trust_info_files = args.trust_info_files
    if args.load_from:
        cfg.load_from = args.load_from
    if args.wandb:
        cfg.visualizer.vis_backends = list(cfg.visualizer.get('vis_backends') or []) + [
            dict(type='WandbVisBackend', init_kwargs=dict(project='fuller', name=osp.basename(cfg.work_dir),
                                                          mode=args.wandb, dir=cfg.work_dir))]
    if args.resume == 'auto':
        latest = find_latest_good_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if latest is None:
            print(f'train: --resume: no usable checkpoint in {cfg.work_dir}; starting from scratch', flush=True)
        else:
            print(f'train: resuming from {latest}', flush=True)
        cfg.resume, cfg.load_from = latest is not None, latest
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    # One live run per work dir: a second start stops here instead of overwriting checkpoints.
    with work_dir_lock(cfg.work_dir, 'train'), reported_as_exit(cfg, 'train'):
        runner = FullerRunner.from_cfg(cfg)
        runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
