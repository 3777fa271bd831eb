"""``benchmark.py step``: the train-step time of each calibration method against the plain step."""

import copy
import json
import os
import os.path as osp
import statistics
import time

import torch

from ..flops import UTIL_HEADER, count_flops, device_peak, peak_note, utilisation
from .common import _sync, load_batch, machine_info, write_results

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


def _build_model(args):
    """The config's model, built and initialised on ``args.device``, and a batch of its data."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from fuller.engine import drop_pretrained, resolve_config
    from fuller.registry import MODELS

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'amp' in cfg.get('optim_wrapper', {}):
        cfg.optim_wrapper.amp = None  # the step benchmark is fp32 (its wrappers have no amp)
    resolve_config(cfg)
    init_default_scope('fuller')
    torch.manual_seed(0)
    batch = load_batch(cfg, args.batch_size)
    drop_pretrained(cfg.model)  # a step's speed does not depend on its starting weights
    model = MODELS.build(cfg.model).to(torch.device(args.device))
    model.init_weights()
    model.train()
    return model, batch


def _step_variants(model, args) -> dict[str, tuple[str, object]]:
    """name -> (kind, what it runs with): the plain step, each method's calibrated step and, with
    ``--param-level``, the parameter-level baselines."""
    from mmengine.optim import build_optim_wrapper

    from fuller.calibration import build_inter_rule

    optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.01)

    def plain():
        return build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=optimizer))

    variants: dict[str, tuple[str, object]] = {'sum': ('step', plain())}
    for name in args.methods:
        if name not in RULES:
            raise SystemExit(f'benchmark step: unknown method {name!r}; choose from {sorted(RULES)}')
        variants[name] = ('step', build_optim_wrapper(model, dict(
            type='CalibratedOptimWrapper', optimizer=optimizer, inter=RULES[name],
            intra=dict(type='ModalityCalibrator', target='mean'))))
    if args.param_level:
        from torchjd.aggregation import UPGrad

        variants['param-level pcgrad'] = ('param', (plain(), build_inter_rule(dict(type='PCGrad'))))
        variants['torchjd mtl_backward + UPGrad'] = ('torchjd', (plain(), UPGrad()))
    return variants


def _run_variant(model, data: dict, kind: str, obj) -> None:
    """One training step of a variant of :func:`_step_variants`."""
    if kind == 'step':
        model.train_step(data, obj)
    elif kind == 'torchjd':
        torchjd_mtl_step(model, data, *obj)
    else:
        param_level_step(model, data, *obj)


def _time_interleaved(model, batch, variants: dict, warmup: int, iters: int, device) -> tuple[dict, dict]:
    """Seconds per step of every variant over ``iters`` interleaved rounds (after ``warmup``), and
    the CUDA allocator's peak MiB per variant (none on CPU)."""

    def run(kind, obj) -> float:
        data = copy.deepcopy(batch)
        _sync(device)
        t0 = time.perf_counter()
        _run_variant(model, data, kind, obj)
        _sync(device)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {k: [] for k in variants}
    peaks: dict[str, float] = {}
    for _ in range(warmup):
        for kind, obj in variants.values():
            run(kind, obj)
    for _ in range(iters):
        for k, (kind, obj) in variants.items():
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            times[k].append(run(kind, obj))
            if device.type == 'cuda':
                peaks[k] = max(peaks.get(k, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
    return times, peaks


def _variant_flops(model, batch, variants: dict) -> dict[str, int]:
    """FLOPs of one step of each variant (:func:`fuller.analysis.flops.count_flops`)."""
    out = {}
    for k, (kind, obj) in variants.items():
        data = copy.deepcopy(batch)
        with count_flops(model) as c:
            _run_variant(model, data, kind, obj)
        out[k] = c['total']
    return out


def bench_step(args) -> None:
    device = torch.device(args.device)
    model, batch = _build_model(args)
    variants = _step_variants(model, args)
    times, peaks = _time_interleaved(model, batch, variants, args.warmup, args.iters, device)
    flops = _variant_flops(model, batch, variants)
    peak = device_peak(device)
    base = statistics.median(times['sum'])
    rows = []
    for k, ts in times.items():
        med = statistics.median(ts)
        rows.append([k, 1000 * statistics.mean(ts), 1000 * med, med / base,
                     f'{peaks[k]:.0f}' if k in peaks else 'n/a (CPU)', *utilisation(flops[k], med, peak['fp32'])])
    if 'fuller' in times and device.type == 'cpu':
        sync = global_sync_cost()
        med = statistics.median(times['fuller']) + sync
        rows.append(['fuller + sync=global all-reduces (2 gloo processes, measured apart)', float('nan'),
                     1000 * med, med / base, 'n/a (CPU)', *utilisation(flops['fuller'], med, peak['fp32'])])
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
             'Ratios are medians over the interleaved repetitions, relative to *sum*. fp32. '
             + peak_note(peak))
    write_results(args.out, args.name or 'step', 'Train-step cost of gradient calibration', machine_info(device),
                  {'config': args.config, 'batch_size': args.batch_size, 'warmup': args.warmup, 'iters': args.iters},
                  ['variant', 'mean ms', 'median ms', 'ratio to sum', 'peak MiB', *UTIL_HEADER], rows, notes,
                  {'times_s': times, 'flops': flops, 'device_peak_gflops': peak})
