"""One readable table of all metrics of a test run; the CPU that tables of timings and results name."""

import os
import platform

DET_KEYS = ('mAP', 'NDS', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE')


def format_metrics_table(metrics: dict[str, float]) -> str:
    """Detection summary, per-class AP, and map IoU per class, from ``runner.test()``'s dict
    (keys ``det/mAP``, ``det/AP_car``, ``map/IoU_walkway``, ``map/mIoU``, ...)."""
    det = {k.split('/', 1)[1]: v for k, v in metrics.items() if k.startswith('det/')}
    seg = {k.split('/', 1)[1]: v for k, v in metrics.items() if k.startswith('map/')}
    other = {k: v for k, v in metrics.items() if not k.startswith(('det/', 'map/'))}
    lines = []
    if det:
        lines.append('3D detection (nuScenes devkit)')
        lines.append('  ' + ''.join(f'{k:>8}' for k in DET_KEYS if k in det))
        lines.append('  ' + ''.join(f'{det[k]:>8.4f}' for k in DET_KEYS if k in det))
        aps = {k[3:]: v for k, v in det.items() if k.startswith('AP_')}
        if aps:
            lines.append('  per-class AP:')
            items = [f'{c} {v:.3f}' for c, v in aps.items()]
            lines += ['    ' + ', '.join(items[i:i + 5]) for i in range(0, len(items), 5)]
    if seg:
        lines.append('BEV map segmentation (IoU at the best threshold per class)')
        ious = {k[4:]: v for k, v in seg.items() if k.startswith('IoU_')}
        lines.append('  ' + ''.join(f'{c:>14}' for c in ious) + f'{"mIoU":>9}')
        lines.append('  ' + ''.join(f'{v:>14.4f}' for v in ious.values()) + f'{seg.get("mIoU", float("nan")):>9.4f}')
        thrs = [seg.get(f'thr_{c}') for c in ious]
        if all(t is not None for t in thrs):
            lines.append('  ' + ''.join(f'{"thr " + format(t, ".2f"):>14}' for t in thrs))
    for k, v in other.items():
        lines.append(f'{k}: {v}')
    width = min(max((len(x) for x in lines), default=0), 100)
    return '\n'.join(['=' * width, *lines, '=' * width])


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one, else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """CPU model name and its widest vector extensions (timings differ between AVX2 and
    AVX-512/AMX machines of the same kind)."""
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    isa = [x for x in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if x in flags]
    return f'{name} ({", ".join(isa) or "no AVX2"})'


def auto_precision(cuda_bf16: bool | None = None, flags: set[str] | None = None,
                   device_type: str | None = None) -> tuple[str | None, str]:
    """The precision ``amp='auto'`` (``--amp auto``) trains in, and why: ``'bfloat16'`` on a
    CUDA device that supports it and on a CPU with native bf16 matrix units (AVX-512 BF16 or
    AMX), ``None`` (fp32) elsewhere: on an AVX2-only CPU bf16 autocast made the demo step 6.7x
    slower (docs/benchmarks/train_demo_cpu.md), on an AVX-512 BF16 + AMX Xeon 1.7x faster.

    Args:
        cuda_bf16: whether the CUDA device supports bf16; ``None``: ask torch (CPU if no CUDA).
        flags: CPU flags; ``None``: this machine's.
        device_type: ``'cpu'`` decides by the CPU even where CUDA is available; ``None``: CUDA
            when available.
    """
    import torch

    if cuda_bf16 is None and device_type != 'cpu' and torch.cuda.is_available():
        cuda_bf16 = torch.cuda.is_bf16_supported()
    if cuda_bf16 is not None:
        return ('bfloat16', 'the CUDA device supports bf16') if cuda_bf16 else \
            (None, 'the CUDA device has no bf16 support: fp32 (use --amp --amp-dtype float16 for fp16)')
    flags = cpu_flags() if flags is None else flags
    native = [f for f in ('amx_bf16', 'avx512_bf16') if f in flags]
    if native:
        return 'bfloat16', f'the CPU has native bf16 units ({", ".join(native)})'
    return None, 'the CPU has no native bf16 units (no AVX-512 BF16 or AMX): fp32, as bf16 would be emulated and slower'

