"""Benchmarks: calibration cost per train step, BEV pooling, data pipeline, training throughput.

Each sub-command writes ``<name>.json`` and ``<name>.md`` under ``--out`` (default
``docs/benchmarks/``) with the machine, library versions, config and date.

    python tools/benchmark.py step     # train-step time: plain vs FULLER vs other rules vs param-level PCGrad
    python tools/benchmark.py bevpool  # BEV pooling forward+backward, nuScenes-sized inputs
    python tools/benchmark.py vtransform  # view-transform pooling: frustum-free vs materialised (time, memory)
    python tools/benchmark.py data     # training pipeline samples/s per worker
    python tools/benchmark.py train    # samples/s and peak memory, synthetic inputs (fp32 and bf16)

Timings are interleaved across variants (one step of each in turn, repeated) after a warm-up,
so slow drifts of the machine affect all variants alike; ratios are of medians.
"""

import argparse
import copy
import datetime
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

import numpy as np
import torch

from fuller.utils.report import cpu_model

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join('configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
RULES = {
    'fuller': dict(type='FullerInter', normalize='mean'),
    'upgrad': dict(type='UPGrad'),
    'pcgrad': dict(type='PCGrad'),
    'mgda': dict(type='MGDA'),
    'cagrad': dict(type='CAGrad', c=0.5),
    'imtlg': dict(type='IMTLG'),
    'nashmtl': dict(type='NashMTL', n_tasks=2),
    'alignedmtl': dict(type='AlignedMTL'),
}


# ---------------------------------------------------------------------------- reporting
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
    another nuScenes-format tree (e.g. the demo data for the nuScenes config)."""
    from mmengine.dataset import pseudo_collate

    from fuller.engine import set_data_root
    from fuller.registry import DATASETS

    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    if data_root is not None:
        set_data_root(ds_cfg, data_root)
    dataset = DATASETS.build(ds_cfg)
    return pseudo_collate([dataset[i % len(dataset)] for i in range(batch_size)])


def param_level_step(model, data: dict, optim_wrapper, rule) -> None:
    """Parameter-level gradient surgery (PCGrad-style): each task's gradient over **all**
    shared parameters (m backward passes through the whole network), combined by ``rule``.
    This is the cost FULLER avoids by calibrating at the shared feature."""
    data = model.data_preprocessor(data, True)
    inputs, samples = data['inputs'], data['data_samples']
    feats, _ = model.extract_feat(inputs, samples)
    groups = model.task_losses(feats, samples)
    totals = [sum(v for k, v in g.items() if 'loss' in k) for g in groups.values()]
    shared = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith('heads.')]
    heads = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith('heads.')]
    rows = []
    head_grads = [None] * len(heads)
    for total in totals:  # one full backward per task; the heads' gradients come with it
        gs = torch.autograd.grad(total, shared + heads, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                               for p, g in zip(shared, gs[:len(shared)])]))
        head_grads = [h if g is None else (g if h is None else h + g) for h, g in zip(head_grads, gs[len(shared):])]
    combined = rule(torch.stack(rows))
    offset = 0
    for p in shared:
        p.grad = combined[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    for p, g in zip(heads, head_grads):
        p.grad = None if g is None else g
    optim_wrapper.step()
    optim_wrapper.zero_grad()


def torchjd_mtl_step(model, data: dict, optim_wrapper, aggregator) -> None:
    """torchjd's own multi-task step: ``mtl_backward`` (the Jacobian of the task losses over
    all shared parameters, the heads' gradients on the way) and ``jac_to_grad`` with the
    aggregator: parameter-level UPGrad as torchjd users run it."""
    from torchjd.autojac import jac_to_grad, mtl_backward

    data = model.data_preprocessor(data, True)
    feats, _ = model.extract_feat(data['inputs'], data['data_samples'])
    groups = model.task_losses(feats, data['data_samples'])
    totals = [sum(v for k, v in g.items() if 'loss' in k) for g in groups.values()]
    shared = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith('heads.')]
    heads = [[p for n, p in model.named_parameters() if p.requires_grad and n.startswith(f'heads.{t}.')]
             for t in groups]
    mtl_backward(totals, features=feats, tasks_params=heads, shared_params=shared, parallel_chunk_size=1)
    jac_to_grad(shared, aggregator)
    optim_wrapper.step()
    optim_wrapper.zero_grad()


def _allreduce_worker(rank: int, port: int, iters: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    gram, norms = torch.ones(2, 2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    ts = []
    for i in range(iters + 20):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(gram)  # what sync='global' adds to a step: the Gram matrix ...
        dist.all_reduce(norms)  # ... and the two squared modality norms
        if i >= 20:
            ts.append(time.perf_counter() - t0)
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(ts, f)
    dist.destroy_process_group()


def global_sync_cost(iters: int = 200) -> float:
    """Median seconds of the two all-reduces that ``sync='global'`` adds per step, 2 gloo processes."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'ts.json')
        mp.spawn(_allreduce_worker, args=(port, iters, out), nprocs=2, join=True)
        with open(out) as f:
            return statistics.median(json.load(f))


def bench_step(args) -> None:
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from fuller.calibration import build_inter_rule
    from fuller.engine import resolve_config
    from fuller.registry import MODELS

    device = torch.device(args.device)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_config(cfg)
    init_default_scope('fuller')
    torch.manual_seed(0)
    batch = load_batch(cfg, args.batch_size)
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    model.train()
    optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.01)
    variants: dict[str, tuple[str, object]] = {'sum': ('step', build_optim_wrapper(
        model, dict(type='OptimWrapper', optimizer=optimizer)))}
    for name in args.methods:
        if name not in RULES:
            raise SystemExit(f'benchmark step: unknown method {name!r}; choose from {sorted(RULES)}')
        ow = build_optim_wrapper(model, dict(type='CalibratedOptimWrapper', optimizer=optimizer, inter=RULES[name],
                                             intra=dict(type='ModalityCalibrator', target='mean')))
        variants[name] = ('step', ow)
    if args.param_level:
        variants['param-level pcgrad'] = ('param', (build_optim_wrapper(
            model, dict(type='OptimWrapper', optimizer=optimizer)), build_inter_rule(dict(type='PCGrad'))))
        from torchjd.aggregation import UPGrad

        variants['torchjd mtl_backward + UPGrad'] = ('torchjd', (build_optim_wrapper(
            model, dict(type='OptimWrapper', optimizer=optimizer)), UPGrad()))

    def run(kind, obj) -> float:
        data = copy.deepcopy(batch)
        _sync(device)
        t0 = time.perf_counter()
        if kind == 'step':
            model.train_step(data, obj)
        elif kind == 'torchjd':
            torchjd_mtl_step(model, data, *obj)
        else:
            param_level_step(model, data, *obj)
        _sync(device)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {k: [] for k in variants}
    peaks: dict[str, float] = {}
    for _ in range(args.warmup):
        for k, (kind, obj) in variants.items():
            run(kind, obj)
    for _ in range(args.iters):
        for k, (kind, obj) in variants.items():
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            times[k].append(run(kind, obj))
            if device.type == 'cuda':
                peaks[k] = max(peaks.get(k, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
    base = statistics.median(times['sum'])
    rows = []
    for k, ts in times.items():
        med = statistics.median(ts)
        rows.append([k, 1000 * statistics.mean(ts), 1000 * med, med / base,
                     f'{peaks[k]:.0f}' if k in peaks else 'n/a (CPU)'])
    if 'fuller' in times and device.type == 'cpu':
        sync = global_sync_cost()
        med = statistics.median(times['fuller']) + sync
        rows.append(['fuller + sync=global all-reduces (2 gloo processes, measured apart)', float('nan'),
                     1000 * med, med / base, 'n/a (CPU)'])
    notes = ('*sum*: plain optimizer step on the summed losses. The calibration methods take each task\'s '
             'gradient at the shared BEV feature and its head\'s parameter gradients (one backward through '
             'that head only), combine the feature gradients with the rule, and run one backward through the '
             'backbone; all of them also apply the modality calibration. *param-level pcgrad*: per-task '
             'gradients over all shared parameters (one full backward per task), the baseline that '
             'FULLER\'s feature-level calibration avoids; its head gradients come with the per-task passes. '
             '*torchjd mtl_backward + UPGrad*: torchjd\'s own multi-task step (Jacobian of the task losses over '
             'all shared parameters, then UPGrad), as a peer. *sync=global*: the FULLER step plus the two '
             'all-reduces (a 2x2 Gram matrix and two squared norms) that whole-batch calibration adds under '
             'DDP, timed between two gloo processes on this machine. '
             'Ratios are medians over the interleaved repetitions, relative to *sum*.')
    write_results(args.out, args.name or 'step', 'Train-step cost of gradient calibration', machine_info(device),
                  {'config': args.config, 'batch_size': args.batch_size, 'warmup': args.warmup, 'iters': args.iters},
                  ['variant', 'mean ms', 'median ms', 'ratio to sum', 'peak MiB'], rows, notes,
                  {'times_s': times})


# ---------------------------------------------------------------------------- bevpool
def nuscenes_frustum_coords(n_cam: int = 6, depth_bins: int = 118, fh: int = 32, fw: int = 88,
                            image_size: tuple = (256, 704), dbound: tuple = (1.0, 60.0, 0.5),
                            xbound: tuple = (-54.0, 54.0, 0.3), zbound: tuple = (-10.0, 10.0, 20.0)) -> torch.Tensor:
    """Cell coordinates [P, 4] (x, y, z, batch) of the LSS frustum of six cameras on a ring
    (nuScenes-like intrinsics scaled to ``image_size``), as BEVFusion's view transform makes."""
    h, w = image_size
    f = 1266.0 * w / 1600
    d = torch.arange(*dbound)[:depth_bins]
    u = torch.linspace(0, w - 1, fw)
    v = torch.linspace(0, h - 1, fh)
    dd, vv, uu = torch.meshgrid(d, v, u, indexing='ij')
    x_cam = (uu - w / 2) / f * dd
    y_cam = (vv - h / 2) / f * dd
    pts = []
    for c in range(n_cam):
        yaw = 2 * np.pi * c / n_cam
        # camera z forward, x right, y down -> LiDAR x forward, y left, z up
        fwd, left, up = dd, -x_cam, -y_cam + 1.5
        cx, sx = np.cos(yaw), np.sin(yaw)
        pts.append(torch.stack([cx * fwd - sx * left, sx * fwd + cx * left, up], -1).reshape(-1, 3))
    p = torch.cat(pts)
    n = int(round((xbound[1] - xbound[0]) / xbound[2]))
    coords = torch.stack([((p[:, 0] - xbound[0]) / xbound[2]).floor(), ((p[:, 1] - xbound[0]) / xbound[2]).floor(),
                          ((p[:, 2] - zbound[0]) / zbound[2]).floor(), torch.zeros(len(p))], 1).long()
    return coords, n


def bench_bevpool(args) -> None:
    from fuller.models.camera.bev_pool import bev_pool_indexed, bev_pool_scatter, bev_pool_sorted

    device = torch.device(args.device)
    coords, n = nuscenes_frustum_coords(depth_bins=args.depth_bins, fh=args.feat_h, fw=args.feat_w)
    coords = coords.to(device)
    torch.manual_seed(0)
    feats = torch.randn(len(coords), args.channels, device=device)
    impls = {'bev_pool_indexed (index_add, spare row; CPU default)': bev_pool_indexed,
             'bev_pool_sorted (sort + segment_reduce; CUDA default)': bev_pool_sorted,
             'scatter-add reference (filter + index_add)': bev_pool_scatter}

    def run(fn) -> tuple[float, float]:
        x = feats.detach().requires_grad_(True)
        _sync(device)
        t0 = time.perf_counter()
        out = fn(x, coords, 1, n, n, 1)
        _sync(device)
        t1 = time.perf_counter()
        out.backward(torch.ones_like(out))
        _sync(device)
        return t1 - t0, time.perf_counter() - t1

    ref = bev_pool_scatter(feats, coords, 1, n, n, 1)
    max_err = max(float((ref - fn(feats, coords, 1, n, n, 1)).abs().max()) for fn in impls.values())
    times = _interleaved(impls, run, args.warmup, args.iters)
    base = statistics.median(f + b for f, b in times[next(reversed(impls))])
    rows = []
    for k, ts in times.items():
        fw_ms = 1000 * statistics.median(t[0] for t in ts)
        bw_ms = 1000 * statistics.median(t[1] for t in ts)
        rows.append([k, fw_ms, bw_ms, fw_ms + bw_ms, (fw_ms + bw_ms) / 1000 / base])
    write_results(args.out, args.name or 'bevpool', 'BEV pooling, forward + backward', machine_info(device),
                  {'points': len(coords), 'channels': args.channels, 'grid': f'{n}x{n}', 'cameras': 6,
                   'depth_bins': args.depth_bins, 'feature_map': f'{args.feat_h}x{args.feat_w}',
                   'warmup': args.warmup, 'iters': args.iters, 'max_abs_diff': max_err},
                  ['implementation', 'forward ms', 'backward ms', 'total ms', 'ratio to reference'], rows,
                  'Medians over interleaved repetitions; frustum of six ring cameras (nuScenes-like intrinsics) '
                  'on a 0.3 m BEV grid as in BEVFusion.')


# ---------------------------------------------------------------------------- vtransform
def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: now; VmHWM: peak of this process image,
    unlike ru_maxrss, which a child inherits from the parent it was forked from)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def bench_vtransform(args) -> None:
    from fuller.models.camera.bev_pool import _cell_index, _to_bev, bev_pool_indexed, bev_pool_scatter
    from fuller.models.camera.depth_pool import FrustumMapping, depth_weighted_pool

    device = torch.device(args.device)
    n_cam, d, fh, fw, c = 6, args.depth_bins, args.feat_h, args.feat_w, args.channels
    coords, n = nuscenes_frustum_coords(n_cam=n_cam, depth_bins=d, fh=fh, fw=fw)
    coords = coords.to(device)
    flat, inside = _cell_index(coords, 1, n, n, 1)
    cells = torch.where(inside, flat, -1)
    torch.manual_seed(0)
    depth0 = torch.randn(n_cam, d, fh, fw, device=device).softmax(1)
    ctx0 = torch.randn(n_cam, c, fh, fw, device=device)
    mapping = FrustumMapping.from_cells(cells, n * n, d, fh * fw)

    def materialised(pool):
        def f(depth, ctx):
            vol = (depth.unsqueeze(1) * ctx.unsqueeze(2)).permute(0, 2, 3, 4, 1)  # [N, D, fH, fW, C]
            return pool(vol.reshape(-1, c), coords, 1, n, n, 1)
        return f

    def frustum_free(rebuild: bool):
        def f(depth, ctx):
            m = FrustumMapping.from_cells(cells, n * n, d, fh * fw) if rebuild else mapping
            return _to_bev(depth_weighted_pool(depth, ctx, m), 1, n, n, 1)
        return f

    variants = {
        'frustum-free CSR pooling, mapping reused (inference; FULLER default)': frustum_free(False),
        'frustum-free CSR pooling, mapping built every step (training)': frustum_free(True),
        'materialised frustum + index_add pooling (previous default)': materialised(bev_pool_indexed),
        'materialised frustum + scatter-add (naive reference)': materialised(bev_pool_scatter),
    }

    if args.only is not None:  # child process of the memory measurement: one path, print its peak
        fn = list(variants.values())[args.only]
        start = _status_kib('VmRSS')
        for _ in range(2):
            out = fn(depth0.detach().requires_grad_(True), ctx0.detach().requires_grad_(True))
            out.backward(torch.ones_like(out))
            del out
        print(f'PEAK_MIB {(_status_kib("VmHWM") - start) / 1024:.1f}')
        return

    def step(fn) -> tuple[float, float]:
        depth = depth0.detach().requires_grad_(True)
        ctx = ctx0.detach().requires_grad_(True)
        _sync(device)
        t0 = time.perf_counter()
        out = fn(depth, ctx)
        _sync(device)
        t1 = time.perf_counter()
        out.backward(torch.ones_like(out))
        _sync(device)
        return t1 - t0, time.perf_counter() - t1

    ref = variants['materialised frustum + scatter-add (naive reference)'](depth0, ctx0)
    max_err = max(float((ref - fn(depth0, ctx0)).abs().max()) for fn in variants.values())
    times = _interleaved(variants, step, args.warmup, args.iters)
    peaks = {}
    for k, fn in variants.items():
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
            base_alloc = torch.cuda.memory_allocated(device)
            step(fn)
            peaks[k] = (torch.cuda.max_memory_allocated(device) - base_alloc) / 2**20
        else:  # a fresh process per path, so that paths do not see each other's peaks
            import subprocess

            argv = [sys.executable, osp.abspath(__file__), 'vtransform', '--only', str(list(variants).index(k)),
                    '--channels', str(c), '--depth-bins', str(d), '--feat-h', str(fh), '--feat-w', str(fw),
                    '--device', 'cpu']
            res = subprocess.run(argv, capture_output=True, text=True, check=True)
            peaks[k] = float(res.stdout.split('PEAK_MIB')[-1])
    prev = 'materialised frustum + index_add pooling (previous default)'
    base_t = statistics.median(f + b for f, b in times[prev])
    rows = []
    for k, ts in times.items():
        fw_ms = 1000 * statistics.median(t[0] for t in ts)
        bw_ms = 1000 * statistics.median(t[1] for t in ts)
        rows.append([k, fw_ms, bw_ms, fw_ms + bw_ms, base_t / ((fw_ms + bw_ms) / 1000), peaks[k],
                     peaks[prev] / max(peaks[k], 1e-6)])
    info = machine_info(device)
    write_results(args.out, args.name or 'vtransform', 'LSS view transform pooling, forward + backward',
                  info, {'cameras': n_cam, 'depth_bins': d, 'feature_map': f'{fh}x{fw}', 'channels': c,
                         'grid': f'{n}x{n}', 'frustum_points': len(coords), 'points_in_grid': mapping.nnz,
                         'warmup': args.warmup, 'iters': args.iters, 'max_abs_diff': max_err},
                  ['path', 'forward ms', 'backward ms', 'total ms', 'speed-up vs previous default', 'peak MiB',
                   'memory ratio vs previous default'], rows,
                  'Depth probabilities and context features in, BEV map out (what the view transform pools), with '
                  'the gradients of both inputs. Medians over interleaved repetitions. Peak MiB: on CPU the peak '
                  'resident memory above the inputs, in a fresh process per path (two steps); on CUDA the '
                  'allocator peak above the inputs.')


# ---------------------------------------------------------------------------- data
def bench_data(args) -> None:
    from mmengine.registry import init_default_scope

    from fuller.engine import read_config
    from fuller.registry import DATASETS

    cfg = read_config(args.config)
    init_default_scope('fuller')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(0)
    for i in range(args.warmup):
        dataset[i % len(dataset)]
    per = []
    for i in range(args.iters):
        t0 = time.perf_counter()
        dataset[(args.warmup + i) % len(dataset)]
        per.append(time.perf_counter() - t0)
    med = statistics.median(per)
    rows = [[osp.basename(args.config), len(dataset), 1000 * statistics.mean(per), 1000 * med, 1 / med]]
    write_results(args.out, args.name or 'data', 'Training data pipeline, one worker', machine_info(torch.device('cpu')),
                  {'config': args.config, 'data_root': cfg.train_dataloader.dataset.data_root, 'warmup': args.warmup,
                   'iters': args.iters},
                  ['config', 'samples in split', 'mean ms/sample', 'median ms/sample', 'samples/s/worker'], rows,
                  'One worker process = one pipeline; with `num_workers=k` the loader delivers about k times '
                  'this rate while CPU cores are free. Size `num_workers` so that k x samples/s exceeds the '
                  'training step rate times the batch size.')


# ---------------------------------------------------------------------------- train
def synthetic_batch(cfg, batch_size: int, n_points: int, data_root: str | None = None) -> dict:
    """Inputs of the config's sizes: points in range, random images, calibration of a real
    demo sample, boxes and map masks from that sample (so the losses are real)."""
    batch = load_batch(cfg, batch_size, data_root)
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


def bench_train(args) -> None:
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from fuller.engine import read_config
    from fuller.registry import MODELS

    device = torch.device(args.device)
    if args.pool_impls and len(args.pool_impls) > 1:
        return _train_per_pool_impl(args, device)
    cfg = read_config(args.config)
    if args.pool_impls:
        cfg.model.encoders.camera.vtransform.pool_impl = args.pool_impls[0]
    init_default_scope('fuller')
    batch = synthetic_batch(cfg, args.batch_size, args.points, args.data_root)
    rows = []
    for dtype in args.dtypes:
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).to(device)
        model.init_weights()
        model.train()
        ow_cfg = dict(cfg.optim_wrapper)
        if dtype == 'bf16':  # as tools/train.py --amp --amp-dtype bfloat16 does
            if ow_cfg.get('type', 'OptimWrapper') in ('OptimWrapper', 'AmpOptimWrapper'):
                ow_cfg['type'] = 'GuardedOptimWrapper'
            ow_cfg['amp'] = 'bfloat16'
            ow_cfg['device_type'] = device.type
        ow = build_optim_wrapper(model, ow_cfg)
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
        rows.append([dtype, 1000 * med, args.batch_size / med, peak])
    write_results(args.out, args.name or 'train', 'Training throughput on synthetic inputs', machine_info(device),
                  {'config': args.config, 'data_root': args.data_root or cfg.train_dataloader.dataset.data_root,
                   'batch_size': args.batch_size, 'points_per_sample': args.points,
                   'warmup': args.warmup, 'iters': args.iters, 'optim_wrapper': cfg.optim_wrapper.get('type')},
                  ['precision', 'median ms/step', 'samples/s/device', 'peak MiB'], rows,
                  'Random points in the point-cloud range and random images at the config\'s sizes; boxes, map '
                  'masks and calibration from real samples of the data root, so every loss is computed for real. '
                  'Peak memory: CUDA allocator peak on GPU; on CPU the process\'s peak resident set so far (it '
                  'only grows, so a later row includes the earlier ones).')


def _train_per_pool_impl(args, device: torch.device) -> None:
    """The train benchmark once per view-transform pooling path, each in a fresh process (so
    that each has its own peak memory), back to back; one table."""
    import subprocess
    import tempfile

    impls = list(args.pool_impls)
    # Rounds in A B B A order, so that a drift of the machine's speed hits every path alike.
    order = [impl for r in range(args.rounds) for impl in (impls if r % 2 == 0 else impls[::-1])]
    runs: dict[tuple, list] = {}  # (impl, precision) -> [(ms/step, peak), ...] over rounds
    with tempfile.TemporaryDirectory() as tmp:
        for k, impl in enumerate(order):
            argv = [sys.executable, osp.abspath(__file__), 'train', '--config', args.config, '--batch-size',
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


# ---------------------------------------------------------------------------- cli
def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='FULLER benchmarks')
    sub = p.add_subparsers(dest='cmd', required=True)

    def common(sp, warmup: int, iters: int) -> None:
        sp.add_argument('--out', default=osp.join('docs', 'benchmarks'))
        sp.add_argument('--name', help='output file stem (default: the sub-command)')
        sp.add_argument('--warmup', type=int, default=warmup)
        sp.add_argument('--iters', type=int, default=iters)
        sp.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')

    s = sub.add_parser('step', help='train-step time per calibration method')
    common(s, 2, 10)
    s.add_argument('--config', default=DEMO_CONFIG)
    s.add_argument('--batch-size', type=int, default=2)
    s.add_argument('--methods', nargs='*', default=list(RULES))
    s.add_argument('--no-param-level', dest='param_level', action='store_false')
    s.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    b = sub.add_parser('bevpool', help='BEV pooling implementations')
    common(b, 1, 5)
    b.add_argument('--channels', type=int, default=80)
    b.add_argument('--depth-bins', type=int, default=118)
    b.add_argument('--feat-h', type=int, default=32)
    b.add_argument('--feat-w', type=int, default=88)
    v = sub.add_parser('vtransform', help='view-transform pooling: frustum-free vs materialised, time and memory')
    common(v, 1, 5)
    v.add_argument('--channels', type=int, default=80)
    v.add_argument('--depth-bins', type=int, default=118)
    v.add_argument('--feat-h', type=int, default=32)
    v.add_argument('--feat-w', type=int, default=88)
    v.add_argument('--only', type=int, help=argparse.SUPPRESS)
    d = sub.add_parser('data', help='training pipeline samples/s per worker')
    common(d, 2, 20)
    d.add_argument('--config', default=DEMO_CONFIG)
    t = sub.add_parser('train', help='training throughput on synthetic inputs')
    common(t, 3, 10)
    t.add_argument('--config', default=DEMO_CONFIG)
    t.add_argument('--batch-size', type=int, default=2)
    t.add_argument('--points', type=int, default=250_000, help='points per sample (nuScenes, 10 sweeps: ~250k)')
    t.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'])
    t.add_argument('--pool-impls', nargs='+', help='view-transform pooling paths to compare, e.g. csr indexed '
                                                   '(each in its own process)')
    t.add_argument('--rounds', type=int, default=2, help='with several --pool-impls: fresh processes per path, '
                                                          'in A B B A order')
    t.add_argument('--data-root', help='take the calibration, boxes and map masks from this nuScenes-format tree '
                                       '(e.g. data/nuscenes-demo/ when nuScenes is not on disk)')
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    {'step': bench_step, 'bevpool': bench_bevpool, 'vtransform': bench_vtransform, 'data': bench_data,
     'train': bench_train}[args.cmd](args)


if __name__ == '__main__':
    main()
