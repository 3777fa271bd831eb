"""``benchmark.py bevpool`` and ``vtransform``: BEV pooling and the view transform's pooling paths."""

import statistics
import sys
import time

import numpy as np
import torch

from ..flops import UTIL_HEADER, device_peak, peak_note, utilisation
from .common import BENCHMARK_SCRIPT, _interleaved, _status_kib, _sync, machine_info, write_results


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
    peak = device_peak(device)
    useful = len(coords) * args.channels  # one addition per point and channel; the backward gathers
    for k, ts in times.items():
        fw_ms, bw_ms = _median_ms(ts)
        rows.append([k, fw_ms, bw_ms, fw_ms + bw_ms, (fw_ms + bw_ms) / 1000 / base,
                     *utilisation(useful, (fw_ms + bw_ms) / 1000, peak['fp32'])])
    write_results(args.out, args.name or 'bevpool', 'BEV pooling, forward + backward', machine_info(device),
                  {'points': len(coords), 'channels': args.channels, 'grid': f'{n}x{n}', 'cameras': 6,
                   'depth_bins': args.depth_bins, 'feature_map': f'{args.feat_h}x{args.feat_w}',
                   'warmup': args.warmup, 'iters': args.iters, 'max_abs_diff': max_err},
                  ['implementation', 'forward ms', 'backward ms', 'total ms', 'ratio to reference', *UTIL_HEADER],
                  rows,
                  'Medians over interleaved repetitions; frustum of six ring cameras (nuScenes-like intrinsics) '
                  'on a 0.3 m BEV grid as in BEVFusion. FLOPs: the pooling\'s useful arithmetic, the same for every '
                  'path (points x channels additions; the backward only gathers): pooling moves memory, so its '
                  'share of the peak is small by nature. ' + peak_note(peak))


# ---------------------------------------------------------------------------- vtransform
_PREVIOUS = 'materialised frustum + index_add pooling (previous default)'
_REFERENCE = 'materialised frustum + scatter-add (naive reference)'


def _vtransform_paths(coords: torch.Tensor, n: int, d: int, fh: int, fw: int, c: int) -> tuple[dict, object]:
    """The four pooling paths, each ``f(depth, ctx) -> BEV``, and the batch's frustum mapping."""
    from fuller.models.camera.bev_pool import _cell_index, _to_bev, bev_pool_indexed, bev_pool_scatter
    from fuller.models.camera.depth_pool import FrustumMapping, depth_weighted_pool

    flat, inside = _cell_index(coords, 1, n, n, 1)
    cells = torch.where(inside, flat, -1)
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

    return {
        'frustum-free CSR pooling, mapping reused (inference; FULLER default)': frustum_free(False),
        'frustum-free CSR pooling, mapping built every step (training)': frustum_free(True),
        _PREVIOUS: materialised(bev_pool_indexed),
        _REFERENCE: materialised(bev_pool_scatter),
    }, mapping


def _forward_backward(fn, depth0: torch.Tensor, ctx0: torch.Tensor, device) -> tuple[float, float]:
    """Seconds of one forward and of its backward (gradients of both inputs)."""
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


def _peak_mib(paths: dict, args, step, device) -> dict:
    """Peak memory of each path: the allocator's on CUDA; on CPU the resident peak of a fresh
    process per path (``--only``), so that paths do not see each other's peaks."""
    import subprocess

    peaks = {}
    for i, (k, fn) in enumerate(paths.items()):
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
            base_alloc = torch.cuda.memory_allocated(device)
            step(fn)
            peaks[k] = (torch.cuda.max_memory_allocated(device) - base_alloc) / 2**20
        else:
            argv = [sys.executable, BENCHMARK_SCRIPT, 'vtransform', '--only', str(i), '--channels',
                    str(args.channels), '--depth-bins', str(args.depth_bins), '--feat-h', str(args.feat_h),
                    '--feat-w', str(args.feat_w), '--device', 'cpu']
            res = subprocess.run(argv, capture_output=True, text=True, check=True)
            peaks[k] = float(res.stdout.split('PEAK_MIB')[-1])
    return peaks


def bench_vtransform(args) -> None:
    device = torch.device(args.device)
    n_cam, d, fh, fw, c = 6, args.depth_bins, args.feat_h, args.feat_w, args.channels
    coords, n = nuscenes_frustum_coords(n_cam=n_cam, depth_bins=d, fh=fh, fw=fw)
    coords = coords.to(device)
    torch.manual_seed(0)
    depth0 = torch.randn(n_cam, d, fh, fw, device=device).softmax(1)
    ctx0 = torch.randn(n_cam, c, fh, fw, device=device)
    paths, mapping = _vtransform_paths(coords, n, d, fh, fw, c)

    if args.only is not None:  # child process of the memory measurement: one path, print its peak
        fn = list(paths.values())[args.only]
        start = _status_kib('VmRSS')
        for _ in range(2):
            out = fn(depth0.detach().requires_grad_(True), ctx0.detach().requires_grad_(True))
            out.backward(torch.ones_like(out))
            del out
        print(f'PEAK_MIB {(_status_kib("VmHWM") - start) / 1024:.1f}')
        return

    def step(fn):
        return _forward_backward(fn, depth0, ctx0, device)

    ref = paths[_REFERENCE](depth0, ctx0)
    max_err = max(float((ref - fn(depth0, ctx0)).abs().max()) for fn in paths.values())
    times = _interleaved(paths, step, args.warmup, args.iters)
    peaks = _peak_mib(paths, args, step, device)
    base_t = statistics.median(f + b for f, b in times[_PREVIOUS])
    rows = []
    peak = device_peak(device)
    # useful arithmetic: per frustum point in the grid and channel, depth x context and the sum
    # into its cell (2), and in the backward both inputs' gradients (2 + 2)
    useful = 6 * mapping.nnz * c
    for k, ts in times.items():
        fw_ms, bw_ms = _median_ms(ts)
        rows.append([k, fw_ms, bw_ms, fw_ms + bw_ms, base_t / ((fw_ms + bw_ms) / 1000), peaks[k],
                     peaks[_PREVIOUS] / max(peaks[k], 1e-6), *utilisation(useful, (fw_ms + bw_ms) / 1000,
                                                                          peak['fp32'])])
    write_results(args.out, args.name or 'vtransform', 'LSS view transform pooling, forward + backward',
                  machine_info(device),
                  {'cameras': n_cam, 'depth_bins': d, 'feature_map': f'{fh}x{fw}', 'channels': c,
                   'grid': f'{n}x{n}', 'frustum_points': len(coords), 'points_in_grid': mapping.nnz,
                   'warmup': args.warmup, 'iters': args.iters, 'max_abs_diff': max_err},
                  ['path', 'forward ms', 'backward ms', 'total ms', 'speed-up vs previous default', 'peak MiB',
                   'memory ratio vs previous default', *UTIL_HEADER], rows,
                  'Depth probabilities and context features in, BEV map out (what the view transform pools), with '
                  'the gradients of both inputs. Medians over interleaved repetitions. Peak MiB: on CPU the peak '
                  'resident memory above the inputs, in a fresh process per path (two steps); on CUDA the '
                  'allocator peak above the inputs. FLOPs: the useful arithmetic, the same for every path (6 per '
                  'frustum point in the grid and channel: product and sum forward, both input gradients '
                  'backward). ' + peak_note(peak))


def _median_ms(ts: list) -> tuple[float, float]:
    """Median forward and backward milliseconds of (forward s, backward s) pairs."""
    return 1000 * statistics.median(t[0] for t in ts), 1000 * statistics.median(t[1] for t in ts)
