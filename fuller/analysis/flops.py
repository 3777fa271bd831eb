"""How far a measurement is from what the hardware can do: FLOPs of a step and the device's peak.

- **Dense FLOPs** are counted by PyTorch's ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products and convolutions, forward and backward, 2 FLOPs per multiply-add).
- **Sparse convolutions** (spconv) are invisible to it; each one is counted from its active
  output sites x kernel volume x input channels x output channels x 2 (an upper bound: a site
  whose kernel offset has no input does no work), and twice that again for the backward when the
  step has one (the input and the weight gradient).
- **Peak FLOP/s** of a CPU: cores x FLOPs per cycle per core x clock, where FLOPs per cycle =
  2 (multiply-add) x lanes of the FMA datapath x FMA units (:func:`cpu_peak`); of a GPU: the
  vendor's dense figure (:data:`GPU_PEAK_TFLOPS`).

So a row's "% of peak" says how much of the arithmetic the device could do in that time it did;
memory-bound work (pooling, BatchNorm, data movement) keeps it low by nature.
"""

from __future__ import annotations

import contextlib
import re

import torch

from fuller.utils.report import cpu_flags

# Dense (no sparsity) peak TFLOP/s from the vendors' data sheets: (fp32 non-tensor, bf16 tensor).
GPU_PEAK_TFLOPS = {
    'H200': (67.0, 989.0),  # H200 SXM
    'H100 SXM': (67.0, 989.0), 'H100 80GB HBM3': (67.0, 989.0),
    'H100 PCIe': (51.0, 756.0), 'H100 NVL': (60.0, 835.0),
    'A100': (19.5, 312.0),
    'A6000': (38.7, 154.8),  # RTX A6000: 309.7 with sparsity
    'L40S': (91.6, 362.0),
    'L4': (30.3, 121.0),
    'A10': (31.2, 125.0),
    'V100': (15.7, None),  # no bf16
    '4090': (82.6, 165.2),
}


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith(name):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_clock_ghz() -> float | None:
    """The nominal clock: the ``@ x.xxGHz`` of the model name where it has one, else the
    ``cpu MHz`` of ``/proc/cpuinfo`` (on a virtual machine the host's nominal clock)."""
    name = _cpuinfo_field('model name') or ''
    m = re.search(r'@\s*([\d.]+)\s*GHz', name)
    if m:
        return float(m.group(1))
    mhz = _cpuinfo_field('cpu MHz')
    return float(mhz) / 1000 if mhz else None


def cpu_flops_per_cycle(flags: set[str], vendor: str, family: int | None) -> tuple[int, int, str]:
    """(fp32, bf16) FLOPs per cycle per core and how they were found.

    fp32: 2 x FMA lanes x FMA units: 2 units of 512 bits on Intel CPUs with AVX-512 (64), 2 of
    256 bits on AMD Zen 4 (AVX-512 instructions on a 256-bit datapath: 32), 2 of 512 bits on
    Zen 5 (64), 2 of 256 bits on AVX2 CPUs (32). bf16: AMX's tile unit, 1024 per cycle (Intel's
    figure, 16x AVX-512 fp32); AVX-512 BF16's dot product, twice the fp32 rate; otherwise the
    fp32 rate (bf16 is converted and computed in fp32)."""
    amd = 'AMD' in vendor
    if 'avx512f' in flags and not (amd and family is not None and family < 0x1A):
        fp32, how = 64, '2 FMA units x 16 fp32 lanes (AVX-512)'
    elif 'avx512f' in flags:
        fp32, how = 32, '2 FMA units x 8 fp32 lanes (AVX-512 on a 256-bit datapath, AMD Zen 4)'
    elif 'avx2' in flags and 'fma' in flags:
        fp32, how = 32, '2 FMA units x 8 fp32 lanes (AVX2)'
    else:
        fp32, how = 8, '2 units x 4 fp32 lanes x 1 (SSE, no FMA)'
    if 'amx_bf16' in flags:
        bf16, bhow = 1024, 'AMX tiles: 1024 bf16 FLOPs per cycle'
    elif 'avx512_bf16' in flags:
        bf16, bhow = 2 * fp32, 'AVX-512 BF16 dot products: 2x the fp32 rate'
    else:
        bf16, bhow = fp32, 'no bf16 units: the fp32 rate'
    return fp32, bf16, f'{how}; {bhow}'


def cpu_peak(threads: int | None = None) -> dict:
    """This CPU's peak GFLOP/s for fp32 and bf16 over ``threads`` cores (default: torch's
    intra-op threads, the cores a step uses) and the formula, for the benchmark tables."""
    threads = threads or torch.get_num_threads()
    fam = _cpuinfo_field('cpu family')
    fp32, bf16, how = cpu_flops_per_cycle(cpu_flags(), _cpuinfo_field('vendor_id') or '',
                                          int(fam) if fam and fam.isdigit() else None)
    ghz = cpu_clock_ghz()
    if ghz is None:
        return {'fp32': None, 'bf16': None, 'how': 'clock unknown'}
    return {'fp32': threads * fp32 * ghz, 'bf16': threads * bf16 * ghz,
            'how': f'{threads} cores x FLOPs/cycle x {ghz:.2f} GHz ({how})'}


def gpu_peak(device: torch.device) -> dict:
    """The vendor's dense peak GFLOP/s of this GPU, where :data:`GPU_PEAK_TFLOPS` knows it."""
    name = torch.cuda.get_device_name(device)
    for key, (fp32, bf16) in GPU_PEAK_TFLOPS.items():
        if key in name:
            return {'fp32': fp32 * 1000, 'bf16': None if bf16 is None else bf16 * 1000,
                    'how': f'{name}: vendor data sheet, dense ({key})'}
    return {'fp32': None, 'bf16': None, 'how': f'{name}: no figure on file'}


def device_peak(device: torch.device) -> dict:
    return gpu_peak(device) if device.type == 'cuda' else cpu_peak()


def _sparse_conv_classes() -> tuple:
    try:
        from spconv.pytorch.conv import SparseConvolution
    except ImportError:
        return ()
    return (SparseConvolution,)


def _sparse_product_flops(func_packet, args) -> int | None:
    """FLOPs of a product with a sparse (CSR/COO) operand, counted from its stored entries: torch's
    counter takes such an operand's dense shape (the view transform's pooling matrix, [BEV cells x
    lifted points], would count as dense). ``mm``/``addmm``: 2 x nnz x the dense operand's other
    side; ``sparse_sampled_addmm``: 2 x nnz of the pattern x the inner size. None: not such a product."""
    aten = torch.ops.aten
    ts = [a for a in args if isinstance(a, torch.Tensor)]
    if not any(t.layout != torch.strided for t in ts):
        return None
    if func_packet is aten.sparse_sampled_addmm:
        pattern, mat1 = args[0], args[1]
        return 2 * int(pattern._nnz()) * int(mat1.shape[-1])
    if func_packet in (aten.mm, aten.addmm):
        a, b = args[-2], args[-1]
        if a.layout != torch.strided:
            return 2 * int(a._nnz()) * int(b.shape[-1])
        return 2 * int(b._nnz()) * int(a.shape[0])
    return None


def _global_flop_counter():
    """``FlopCounterMode`` without its per-module tracking: that tracking puts backward hooks on
    modules, which ``torch.autograd.grad`` on a leaf (the calibrated step's task gradients at the
    shared feature) refuses."""
    from torch.utils import flop_counter

    class GlobalFlopCounter(flop_counter.FlopCounterMode):
        def __enter__(self):
            self.flop_counts.clear()
            self.mode = flop_counter._FlopCounterMode(self)
            self.mode.__enter__()
            return self

        def __exit__(self, *args):
            out, self.mode = self.mode.__exit__(*args), None
            return out

        def _count_flops(self, func_packet, out, args, kwargs):
            n = _sparse_product_flops(func_packet, args)
            if n is not None:
                self.flop_counts['Global'][func_packet] += n
                return out
            if func_packet in self.flop_registry:
                self.flop_counts['Global'][func_packet] += self.flop_registry[func_packet](*args, **kwargs,
                                                                                          out_val=out)
            return out

    return GlobalFlopCounter(display=False)


@contextlib.contextmanager
def count_flops(model: torch.nn.Module | None = None, backward: bool = True):
    """Count the FLOPs of what runs inside: ``with count_flops(model) as c: step()``, then
    ``c['dense']``, ``c['sparse']`` and ``c['total']``. ``model``: where to look for sparse
    convolutions (none counted without it); ``backward``: whether the step runs their backward."""
    counts = {'dense': 0, 'sparse': 0, 'total': 0}
    hooks = []
    classes = _sparse_conv_classes()

    def sparse_hook(mod, _inputs, out):
        sites = out.features.shape[0] if hasattr(out, 'features') else 0
        k = 1
        for s in mod.kernel_size:
            k *= int(s)
        fwd = 2 * sites * k * mod.in_channels * mod.out_channels
        counts['sparse'] += fwd * (3 if backward else 1)

    if model is not None and classes:
        hooks = [m.register_forward_hook(sparse_hook) for m in model.modules() if isinstance(m, classes)]
    mode = _global_flop_counter()
    try:
        with mode:
            yield counts
    finally:
        for h in hooks:
            h.remove()
        counts['dense'] = int(mode.get_total_flops())
        counts['total'] = counts['dense'] + counts['sparse']


def utilisation(flops: float | None, seconds: float, peak_gflops: float | None) -> list:
    """Table cells: GFLOP per step, achieved GFLOP/s, peak GFLOP/s, % of peak."""
    if not flops or not seconds:
        return ['n/a', 'n/a', 'n/a' if peak_gflops is None else round(peak_gflops), 'n/a']
    achieved = flops / seconds / 1e9
    pct = 'n/a' if not peak_gflops else f'{100 * achieved / peak_gflops:.1f}'
    return [flops / 1e9, achieved, 'n/a' if peak_gflops is None else round(peak_gflops), pct]


UTIL_HEADER = ['GFLOP/step', 'GFLOP/s', 'peak GFLOP/s', '% of peak']


def peak_note(peak: dict) -> str:
    return ('FLOPs: dense ops by torch.utils.flop_counter (forward + backward), sparse convolutions as active '
            'output sites x kernel volume x C_in x C_out x 2 (x3 with the backward; an upper bound). Peak: '
            f'{peak["how"]}; fp32 {_g(peak["fp32"])}, bf16 {_g(peak["bf16"])} GFLOP/s.')


def _g(v) -> str:
    return 'unknown' if v is None else f'{v:.0f}'


def precision_peak(peak: dict, precision: str) -> float | None:
    """The peak for a row's precision (``'fp32'``, ``'bf16'``/``'bfloat16'``, ``'fp16'``...)."""
    return peak['bf16'] if precision in ('bf16', 'bfloat16', 'fp16', 'float16') else peak['fp32']


__all__ = ['GPU_PEAK_TFLOPS', 'UTIL_HEADER', 'count_flops', 'cpu_clock_ghz', 'cpu_flops_per_cycle', 'cpu_peak',
           'device_peak', 'gpu_peak', 'peak_note', 'precision_peak', 'utilisation']
