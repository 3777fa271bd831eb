"""``benchmark.py modules``: forward+backward time and peak memory of single modules of a model at
its config's sizes (by default BEVFusion's nuScenes detector: GeneralizedLSSFPN, DepthLSS, the
residual sparse encoder and the TransFusion head).

Each module's inputs are those it receives in one forward pass of the whole model on a synthetic
batch (:func:`synthetic_batch`: random points and images, real calibration and boxes, or with
``--points real`` a real sample); each
module is then timed alone, in a process of its own, so that the peak memory of one does not
hide another's."""

import contextlib
import dataclasses
import gc
import math
import statistics
import subprocess
import sys
import time

import torch

from ..flops import UTIL_HEADER, count_flops, device_peak, peak_note, precision_peak, utilisation
from .common import BENCHMARK_SCRIPT, _status_kib, _sync, machine_info, synthetic_batch, voxels_per_sample, write_results
from .train import HALF

BEVFUSION_DET_CONFIG = 'configs/bevfusion/bevfusion-det_lc_swint_8x4-6e_nuscenes.py'
DEFAULT_MODULES = ('encoders.camera.neck', 'encoders.camera.vtransform', 'encoders.lidar.backbone', 'heads.det')


def config_for(path: str, dtype: str):
    """The config resolved as training in ``dtype`` resolves it (``optim_wrapper.amp`` set, so
    that a model's ``channels_last='bf16'`` follows the precision timed)."""
    from fuller.engine import read_config

    def set_amp(cfg) -> None:
        if isinstance(cfg.get('optim_wrapper'), dict):
            cfg.optim_wrapper.amp = HALF.get(dtype)
    return read_config(path, edit=set_amp)


def autocast_for(device: torch.device, dtype: str):
    """A context that runs the forward pass in ``dtype`` (autocast; none for fp32)."""
    from fuller.engine.amp import AMP_DTYPES

    cast = AMP_DTYPES[HALF.get(dtype)]
    return contextlib.nullcontext() if cast is None else torch.autocast(device.type, dtype=cast)


def _leaf(x):
    """Detached copies of the tensors in ``x`` (float ones require grad, as inside a training step)."""
    if isinstance(x, torch.Tensor):
        y = x.detach().clone()
        return y.requires_grad_(True) if y.is_floating_point() else y
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _leaf(getattr(x, f.name)) for f in dataclasses.fields(x)})
    if isinstance(x, (list, tuple)):
        return type(x)(_leaf(v) for v in x)
    if isinstance(x, dict):
        return {k: _leaf(v) for k, v in x.items()}
    return x


def _total(out) -> torch.Tensor:
    """A scalar of every float tensor in ``out`` that carries a graph (sparse tensors by their features)."""
    if hasattr(out, 'features') and isinstance(out.features, torch.Tensor):
        out = out.features
    if isinstance(out, torch.Tensor):
        return out.float().mean() if out.requires_grad else torch.zeros(())
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return sum((_total(v) for v in out), torch.zeros(()))
    return torch.zeros(())


def capture(model, data: dict, names: tuple[str, ...]) -> dict:
    """The positional and keyword inputs of each named module in one forward pass, and the
    detection head's shared feature (heads are called through ``loss``, not ``forward``)."""
    mods = dict(model.named_modules())
    got, hooks = {}, []
    for name in names:
        if name.startswith('heads.'):
            continue

        def pre(mod, args, kwargs, name=name):
            got[name] = (_leaf(args), _leaf(kwargs))
        hooks.append(mods[name].register_forward_pre_hook(pre, with_kwargs=True))
    with torch.no_grad():
        feats, _ = model.extract_feat(data['inputs'], data['data_samples'])
    for h in hooks:
        h.remove()
    for name in names:
        if name.startswith('heads.'):
            got[name] = ((_leaf(feats), data['data_samples']), {})
    missing = [n for n in names if n not in got]
    if missing:
        raise ValueError(f'{missing}: not called in the forward pass of the model, nothing to time')
    return got


def _step_fn(model, name: str, args, kwargs, amp=contextlib.nullcontext):
    """One forward (under ``amp()``, as a training step's) and backward (outside it, as a
    training step's: a backward under autocast would cast inside custom backward functions)."""
    mod = dict(model.named_modules())[name]

    def step():
        with amp():
            if name.startswith('heads.'):
                losses = mod.loss(*args, **kwargs)
                total = sum(v for k, v in losses.items() if 'loss' in k)
            else:
                total = _total(mod(*args, **kwargs))
        total.backward()
    return step


def _run_one(args) -> None:
    """Child process: time one module, print ``MODULE <ms median> <ms mean> <peak MiB>``."""
    from mmengine.registry import init_default_scope

    from fuller.registry import MODELS

    device = torch.device(args.device)
    cfg = config_for(args.config, args.dtype)
    init_default_scope('fuller')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).train()
    batch = synthetic_batch(cfg, 1, args.points, args.data_root)
    data = model.data_preprocessor(batch, True)
    voxels = voxels_per_sample(model, data)
    with autocast_for(device, args.dtype):  # the inputs in the dtypes the module gets in training
        inputs = capture(model, data, (args.only,))[args.only]
    step = _step_fn(model, args.only, *inputs, amp=lambda: autocast_for(device, args.dtype))
    del batch
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    else:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current resident set (Linux >= 4.0)
        start = _status_kib('VmRSS') * 1024
    times = []
    for i in range(args.warmup + args.iters):
        model.zero_grad(set_to_none=True)
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else _status_kib('VmHWM') * 1024) - start
    model.zero_grad(set_to_none=True)
    with count_flops(model) as c:
        step()
    print(f'MODULE {1000 * statistics.median(times):.3f} {1000 * statistics.mean(times):.3f} {peak / 2**20:.1f} '
          f'{c["total"]} {"nan" if voxels is None else voxels}')


def bench_modules(args) -> None:
    if args.dtype == 'fp16' and not args.device.startswith('cuda'):
        raise SystemExit('benchmark modules: --dtype fp16 needs a CUDA device (float16 on a CPU is slow and unstable: '
                         'docs/benchmarks/README.md)')
    if args.only:
        return _run_one(args)
    from mmengine.registry import init_default_scope

    from fuller.registry import MODELS

    cfg = config_for(args.config, args.dtype)
    init_default_scope('fuller')
    model = MODELS.build(cfg.model)
    mods = dict(model.named_modules())
    units = model.load_units() if hasattr(model, 'load_units') else sorted(n for n in mods if n)
    wrong = [n for n in args.modules if n not in mods or (isinstance(mods[n], torch.nn.ModuleDict))]
    if wrong:
        raise ValueError(f'benchmark modules: {wrong} of --modules are not modules the forward pass calls in '
                         f'{args.config}; its parts: {units}')
    rows, voxels = [], float('nan')
    for name in args.modules:
        argv = [sys.executable, BENCHMARK_SCRIPT, 'modules', '--config', args.config, '--only', name,
                '--points', str(args.points), '--warmup', str(args.warmup), '--iters', str(args.iters),
                '--device', args.device, '--dtype', args.dtype] + (['--data-root', args.data_root] if args.data_root else [])
        r = subprocess.run(argv, capture_output=True, text=True)
        line = next((x for x in r.stdout.splitlines() if x.startswith('MODULE ')), None)
        if r.returncode or line is None:
            raise RuntimeError(f'benchmark modules --only {name} failed:\n{r.stderr[-3000:]}')
        med, mean, peak, flops, vox = (float(v) for v in line.split()[1:])
        voxels = vox if math.isnan(voxels) else voxels
        params = sum(p.numel() for p in mods[name].parameters()) / 1e6
        rows.append([name, type(mods[name]).__name__, round(params, 3), mean, med, peak,
                     *utilisation(flops, med / 1000, precision_peak(device_peak(torch.device(args.device)), args.dtype))])
        print(rows[-1], flush=True)
    mem = 'peak MiB (CUDA allocator)' if args.device.startswith('cuda') else 'peak MiB (RSS above the inputs)'
    write_results(args.out, args.name or 'modules', 'Forward+backward cost per module',
                  machine_info(torch.device(args.device)),
                  {'config': args.config, 'data_root': args.data_root, 'points_per_sample': args.points,
                   'voxels_per_sample': None if math.isnan(voxels) else round(voxels),
                   'batch_size': 1, 'warmup': args.warmup, 'iters': args.iters, 'precision': args.dtype},
                  ['module', 'type', 'M params', 'mean ms', 'median ms', mem, *UTIL_HEADER], rows,
                  "Each module is timed alone (forward, then backward of the mean of its outputs; the detection "
                  "head through its training loss, target assignment included) on the inputs it receives in one "
                  "forward pass of the whole model on a batch of one sample ("
                  + ("the first training sample of the data root, its own points and images"
                     if args.points == 'real' else
                     "random points and images at the config's sizes, calibration and boxes of a real sample of the "
                     "data root; random points fill the volume and make more voxels than a scan of as many points, "
                     "so the sparse encoder costs more than on a scan: --points real times the sample's own")
                  + "), in a process of its own. Input tensors require grad, as inside a training step. CPU memory: "
                  "the process's peak resident set above what it held before the first repetition (VmHWM reset through "
                  "/proc/self/clear_refs). "
                  + ('fp32' if args.dtype == 'fp32' else
                     f'{args.dtype}: the forward under autocast, the backward outside it, as in training; the '
                     'inputs as a forward pass under autocast makes them')
                  + ' (the model built as training in this precision builds it: channels-last convolutions where '
                  "the config's channels_last follows bf16). " + peak_note(device_peak(torch.device(args.device))))
