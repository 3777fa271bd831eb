"""``benchmark.py train``: training throughput and peak memory on synthetic inputs or real samples."""

import copy
import json
import os.path as osp
import statistics
import subprocess
import sys
import time

import torch

from ..flops import UTIL_HEADER, count_flops, device_peak, peak_note, precision_peak, utilisation
from .common import BENCHMARK_SCRIPT, _status_kib, _sync, machine_info, synthetic_batch, voxels_per_sample, write_results

HALF = {'bf16': 'bfloat16', 'fp16': 'float16'}  # --dtypes -> optim_wrapper.amp (fp32: None)


def bench_train(args) -> None:
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from fuller.engine import base_dataset, drop_pretrained
    from fuller.registry import MODELS

    device = torch.device(args.device)
    if 'fp16' in args.dtypes and device.type != 'cuda':
        raise SystemExit('benchmark train: --dtypes fp16 needs a CUDA device (float16 on a CPU is slow and unstable: '
                         'docs/benchmarks/README.md)')
    if args.pool_impls and len(args.pool_impls) > 1:
        return _train_per_pool_impl(args, device)
    from mmengine.config import Config

    from fuller.engine import resolve_config

    raw = Config.fromfile(args.config)  # resolved per precision below (channels_last='bf16' follows it)
    if getattr(args, 'cfg_options', None):
        raw.merge_from_dict(args.cfg_options)
    cfg = resolve_config(copy.deepcopy(raw))
    if args.pool_impls:
        cfg.model.encoders.camera.vtransform.pool_impl = args.pool_impls[0]
    init_default_scope('fuller')
    batch = synthetic_batch(cfg, args.batch_size, args.points, args.data_root)
    rows, voxels = [], None
    for dtype in args.dtypes:
        torch.manual_seed(0)
        per = copy.deepcopy(raw)
        amp = HALF.get(dtype)
        if 'amp' in per.optim_wrapper or amp:
            per.optim_wrapper.amp = amp
        model_cfg = resolve_config(per).model
        if args.pool_impls:
            model_cfg.encoders.camera.vtransform.pool_impl = args.pool_impls[0]
        drop_pretrained(model_cfg)  # a step's speed does not depend on its starting weights
        model = MODELS.build(model_cfg).to(device)
        model.init_weights()
        model.train()
        ow_cfg = dict(cfg.optim_wrapper)
        if amp:  # as tools/train.py --amp --amp-dtype D does
            if ow_cfg.get('type', 'OptimWrapper') in ('OptimWrapper', 'AmpOptimWrapper'):
                ow_cfg['type'] = 'GuardedOptimWrapper'
            ow_cfg['amp'] = amp
            ow_cfg['device_type'] = device.type
        elif 'amp' in ow_cfg:  # fp32 whatever the config's amp (the nuScenes schedules' is 'float16')
            ow_cfg['amp'] = None
        ow = build_optim_wrapper(model, ow_cfg)
        if voxels is None:
            voxels = voxels_per_sample(model, model.data_preprocessor(copy.deepcopy(batch), True))
        ts = []
        for i in range(args.warmup + args.iters):
            if device.type == 'cuda' and i == args.warmup:
                torch.cuda.reset_peak_memory_stats(device)
            data = copy.deepcopy(batch)
            _sync(device)
            t0 = time.perf_counter()
            model.train_step(data, ow)
            _sync(device)
            if i >= args.warmup:
                ts.append(time.perf_counter() - t0)
        med = statistics.median(ts)
        if device.type == 'cuda':
            peak = f'{torch.cuda.max_memory_allocated(device) / 2**20:.0f}'
        else:  # the process's peak resident memory so far
            peak = f'{_status_kib("VmHWM") / 1024:.0f} (RSS)'
        with count_flops(model) as c:
            model.train_step(copy.deepcopy(batch), ow)
        rows.append([dtype, 1000 * med, args.batch_size / med, peak,
                     *utilisation(c['total'], med, precision_peak(device_peak(device), dtype))])
    real = args.points == 'real'
    write_results(args.out, args.name or 'train', 'Training throughput on ' + ('real samples' if real else
                                                                               'synthetic inputs'),
                  machine_info(device),
                  {'config': args.config,
                   'data_root': args.data_root or base_dataset(cfg.train_dataloader.dataset).data_root,
                   'batch_size': args.batch_size, 'points_per_sample': args.points,
                   'voxels_per_sample': None if voxels is None else round(voxels),
                   'warmup': args.warmup, 'iters': args.iters, 'optim_wrapper': cfg.optim_wrapper.get('type')},
                  ['precision', 'median ms/step', 'samples/s/device', 'peak MiB', *UTIL_HEADER], rows,
                  ('The first training samples of the data root as the pipeline makes them (their own points and '
                   'images), the same batch at every step. ' if real else
                   'Random points in the point-cloud range and random images at the config\'s sizes (random points '
                   'fill the volume, where a scan\'s lie on surfaces: they make more voxels than a scan of as many '
                   'points, see voxels_per_sample, and the sparse encoder costs more; --points real times the '
                   'samples\' own); boxes, map masks and calibration from real samples of the data root, so every '
                   'loss is computed for real. ') +
                  'Peak memory: CUDA allocator peak on GPU; on CPU the process\'s peak resident set so far (it '
                  'only grows, so a later row includes the earlier ones). ' + peak_note(device_peak(device)))


def _train_per_pool_impl(args, device: torch.device) -> None:
    """The train benchmark once per view-transform pooling path, each in a fresh process (so
    that each has its own peak memory), back to back; one table."""
    import tempfile

    impls = list(args.pool_impls)
    # Rounds in A B B A order, so that a drift of the machine's speed hits every path alike.
    order = [impl for r in range(args.rounds) for impl in (impls if r % 2 == 0 else impls[::-1])]
    runs: dict[tuple, list] = {}  # (impl, precision) -> [(ms/step, peak), ...] over rounds
    with tempfile.TemporaryDirectory() as tmp:
        for k, impl in enumerate(order):
            argv = [sys.executable, BENCHMARK_SCRIPT, 'train', '--config', args.config, '--batch-size',
                    str(args.batch_size), '--points', str(args.points), '--warmup', str(args.warmup), '--iters',
                    str(args.iters), '--dtypes', *args.dtypes, '--pool-impls', impl, '--device', str(device),
                    '--out', tmp, '--name', f'{impl}_{k}']
            if args.data_root:
                argv += ['--data-root', args.data_root]
            res = subprocess.run(argv, capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(f'benchmark train --pool-impls {impl} failed:\n{res.stderr[-3000:]}')
            with open(osp.join(tmp, f'{impl}_{k}.json')) as f:
                for r in json.load(f)['rows']:
                    runs.setdefault((impl, r[0]), []).append((r[1], r[3]))
    rows = []
    for (impl, prec), rs in runs.items():
        ms = [r[0] for r in rs]
        peak = max(rs, key=lambda r: float(str(r[1]).split()[0]))[1]
        rows.append([impl, prec, statistics.median(ms), ' / '.join(f'{m:.0f}' for m in ms),
                     args.batch_size / (statistics.median(ms) / 1000), peak])
    base = {r[1]: r[2] for r in rows if r[0] == impls[-1]}
    rows = [[*r, base[r[1]] / r[2]] for r in rows]
    write_results(args.out, args.name or 'train', 'Training step per view-transform pooling path',
                  machine_info(device), {'config': args.config, 'data_root': args.data_root, 'batch_size':
                                         args.batch_size, 'points_per_sample': args.points, 'warmup': args.warmup,
                                         'iters': args.iters, 'rounds': args.rounds},
                  ['pool_impl', 'precision', 'median ms/step', 'ms/step per round', 'samples/s/device',
                   'peak MiB', f'speed-up vs {args.pool_impls[-1]}'], rows,
                  f'Each path in a fresh process per round, {args.rounds} round(s) in A B B A order (median over the '
                  'rounds of each round\'s median; peak memory is the highest process peak resident set on CPU, '
                  'the allocator peak on CUDA). csr: frustum-free pooling (default); indexed: the lifted '
                  'frustum materialised and pooled with index_add (the previous default).')
