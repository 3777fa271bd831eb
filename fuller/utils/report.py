"""One readable table of all metrics of a test run; the CPU that tables of timings and results name."""

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


def cpu_model() -> str:
    """CPU model name and its widest vector extensions (timings differ between AVX2 and
    AVX-512/AMX machines of the same kind)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and name in ('', platform.machine(), platform.processor()):
                    name = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    isa = [x for x in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if x in flags]
    return f'{name} ({", ".join(isa) or "no AVX2"})'
