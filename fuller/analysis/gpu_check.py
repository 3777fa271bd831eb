"""The GPU check (``tools/gpu_check.sh``): everything the CUDA paths need verified and timed in one
short run, for the minutes a lent GPU is available.

Stages, each in a process of its own with a time limit, in this order (cheapest first, so that
a short lease still answers the basic questions):

1. ``stack``: torch, CUDA, the device and its bf16 support, NCCL, mmcv's compiled ops on the
   device (voxelization), spconv's sparse convolution on the device;
2. ``tests``: the GPU tests (``tests/test_gpu.py``);
3. ``demo_train``: the demo model's plain (naive) and calibrated (FULLER) training steps in fp32
   and bf16 (``benchmark.py train``: samples/s, ratio, FLOP utilisation);
4. ``nuscenes_train``: the nuScenes config's step at BEVFusion's batch of 4 per GPU in fp32, bf16
   and its own float16 (samples/s, peak memory);
5. ``vtransform``: the frustum-free pooling against the materialising path;
6. ``ddp_global``: a 1-GPU DDP training run (NCCL) with ``sync='global'``.

``--dry-run`` runs the same stages on the CPU at tiny sizes (CUDA-only checks say so), so that the
script cannot rot between leases: CI runs it. It builds nothing: a missing package is reported by
the ``stack`` stage and every later stage that needs it fails with the import error. The summary
``gpu_check.md`` and each stage's table go to ``--out`` (``docs/benchmarks/`` with ``--publish``,
as ``gpu_*.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from fuller.utils.cli import REPO_ROOT, refuse_docs_without_publish

DEMO_FULLER = 'configs/fuller/fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'
DEMO_NAIVE = 'configs/fuller/naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'
NUSCENES_FULLER = 'configs/fuller/fuller_lc_swint_8x4-20e_nuscenes-det-map.py'

STACK_PROBE = r'''
import json, sys, traceback
out = {}
def check(name, fn):
    try:
        out[name] = {'ok': True, 'detail': fn()}
    except Exception as e:
        out[name] = {'ok': False, 'detail': f'{type(e).__name__}: {e}'.splitlines()[0][:300]}
import torch
cuda = torch.cuda.is_available()
dev = 'cuda' if cuda else 'cpu'
check('torch', lambda: f'{torch.__version__}, CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}')
def device():
    if not cuda:
        return 'no CUDA device (dry run on the CPU)'
    gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    return f'{torch.cuda.get_device_name(0)}, {gib:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}'
check('device', device)
check('nccl', lambda: str(torch.distributed.is_nccl_available()) if cuda else 'not checked on the CPU')
def mmcv_ops():
    import mmcv
    from mmcv.ops import Voxelization
    pts = torch.rand(1000, 4, device=dev) * 10
    vox = Voxelization([0.5, 0.5, 0.5], [0, 0, 0, 10, 10, 10], 8, 2000)
    v, c, n = vox(pts)
    return f'mmcv {mmcv.__version__}: Voxelization on {dev}: {len(v)} voxels'
check('mmcv_ops', mmcv_ops)
def spconv_conv():
    import spconv
    import spconv.pytorch as sp
    algo = None if cuda else sp.ConvAlgo.Native
    conv = sp.SubMConv3d(4, 8, 3, algo=algo).to(dev)
    idx = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2], [0, 3, 3, 3]], dtype=torch.int32, device=dev)
    x = sp.SparseConvTensor(torch.randn(3, 4, device=dev), idx, [5, 5, 5], 1)
    y = conv(x)
    return f'spconv {getattr(spconv, "__version__", "?")}: SubMConv3d on {dev}: {tuple(y.features.shape)}'
check('spconv', spconv_conv)
check('fuller_import', lambda: __import__('fuller.models', fromlist=['x']) and 'fuller.models imports')
print('STACK ' + json.dumps(out))
'''


def _stages(py: str, out: str, root: str, dry: bool, cfg_dir: str) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in s) of every stage."""
    bench = [py, osp.join(REPO_ROOT, 'tools', 'benchmark.py')]
    dev = ['--device', 'cpu'] if dry else ['--device', 'cuda']
    small = ['--warmup', '0', '--iters', '1'] if dry else ['--warmup', '3', '--iters', '10']
    dtypes = ['fp32'] if dry else ['fp32', 'bf16']
    demo_pts = ['--points', '2000'] if dry else ['--points', '35000']
    # the dry run's nuScenes step at a quarter of the image side (Swin-T on 6 full images is most of it on a CPU)
    nus = (['--batch-size', '1', '--points', '2000', '--cfg-options', 'geometry.image_size=(64,176)'] if dry
           else ['--batch-size', '4', '--points', '250000'])
    vt = ['--depth-bins', '8', '--feat-h', '8', '--feat-w', '22', '--channels', '8'] if dry else []
    ddp_cfg = osp.join(cfg_dir, 'ddp_global.py')
    stages = [
        ('stack', [py, '-c', STACK_PROBE], 120),
        ('tests', [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', osp.join(REPO_ROOT, 'tests', 'test_gpu.py')],
         240),
    ]
    for tag, cfg in (('naive', DEMO_NAIVE), ('fuller', DEMO_FULLER)):
        stages.append((f'demo_train_{tag}', [*bench, 'train', '--config', osp.join(REPO_ROOT, cfg), '--data-root', root,
                                              '--batch-size', '2', *demo_pts, *small, '--dtypes', *dtypes, *dev,
                                              '--out', out, '--name', f'gpu_demo_train_{tag}'], 180))
    stages += [
        ('nuscenes_train', [*bench, 'train', '--config', osp.join(REPO_ROOT, NUSCENES_FULLER), '--data-root', root, *nus,
                            *(['--warmup', '0', '--iters', '1'] if dry else ['--warmup', '2', '--iters', '5']),
                            # and fp16: the config's own precision (BEVFusion's recipe)
                            '--dtypes', *dtypes, *([] if dry else ['fp16']), *dev, '--out', out,
                            '--name', 'gpu_nuscenes_train'], 240),
        ('vtransform', [*bench, 'vtransform', *vt, *small, *dev, '--out', out, '--name', 'gpu_vtransform'], 120),
        ('ddp_global', [py, '-m', 'torch.distributed.run', '--nproc_per_node', '1', '--master_port', '29517',
                        osp.join(REPO_ROOT, 'tools', 'train.py'), ddp_cfg, '--launcher', 'pytorch',
                        '--work-dir', osp.join(cfg_dir, 'ddp_run')], 180),
    ]
    return stages


def _ddp_config(root: str, cfg_dir: str) -> None:
    """The demo FULLER config on ``root``, 4 iterations, ``sync='global'``, for the DDP stage."""
    from fuller.engine.tiny import tiny_config

    cfg = tiny_config(root, osp.join(cfg_dir, 'ddp_run'), config=osp.join(REPO_ROOT, DEMO_FULLER))
    cfg.train_cfg.max_iters = 4
    cfg.default_hooks.checkpoint.interval = 4
    cfg.optim_wrapper.sync = 'global'
    cfg.dump(osp.join(cfg_dir, 'ddp_global.py'))


def _headline(name: str, out: str, text: str) -> str:
    """One line for the summary: the stage's key numbers."""
    if name == 'stack':
        line = next((x for x in text.splitlines() if x.startswith('STACK ')), None)
        if line is None:
            return 'no report'
        rep = json.loads(line[6:])
        return '; '.join(f'{k}: {"ok" if v["ok"] else "FAIL"} ({v["detail"]})' for k, v in rep.items())
    if name == 'tests':
        return next((x for x in reversed(text.splitlines()) if ' passed' in x or ' skipped' in x or 'error' in x), '?')
    table = {'nuscenes_train': 'gpu_nuscenes_train', 'vtransform': 'gpu_vtransform'}.get(name, f'gpu_{name}')
    path = osp.join(out, f'{table}.json')
    if osp.isfile(path):
        with open(path) as f:
            res = json.load(f)
        return ' / '.join(', '.join(f'{h} {v:.3g}' if isinstance(v, float) else f'{h} {v}'
                                    for h, v in zip(res['header'], r) if h in ('precision', 'path', 'median ms/step',
                                                                                'samples/s/device', 'peak MiB',
                                                                                'total ms', '% of peak'))
                          for r in res['rows'])
    if name == 'ddp_global':
        line = next((x for x in reversed(text.splitlines()) if 'Iter(train)' in x), None)
        return 'no training log line' if line is None else line[line.index('Iter(train)'):][:160]
    return ''


def _demo_root(scratch: str) -> tuple[str | None, str, float]:
    """A tiny demo root (10 scenes x 2 keyframes) in ``scratch``: (root or None, status, seconds)."""
    t0 = time.perf_counter()
    root = osp.join(scratch, 'demo')
    try:
        if not osp.isfile(osp.join(root, 'nuscenes_infos_train.pkl')):
            from fuller.engine.tiny import make_tiny_demo

            make_tiny_demo(root, keyframes=2, sweeps=1)
        return root, 'ok', time.perf_counter() - t0
    except Exception as e:  # a missing package: reported, the stages that need no data still run
        return None, f'FAIL ({type(e).__name__}: {str(e).splitlines()[0][:200]})', time.perf_counter() - t0


def run_check(args) -> int:
    out = osp.abspath(args.out)
    scratch = osp.abspath(args.scratch)
    os.makedirs(out, exist_ok=True)
    os.makedirs(scratch, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               PYTHONUNBUFFERED='1')
    if args.dry_run:
        env['CUDA_VISIBLE_DEVICES'] = ''
    t_start = time.perf_counter()
    results = []
    root = args.data_root
    if root is None:
        root, status, secs = _demo_root(scratch)
        results.append(('data', status, secs, f'tiny demo root {root}' if root else ''))
    if root is not None:
        _ddp_config(root, scratch)
    for name, cmd, limit in _stages(sys.executable, out, root or '', args.dry_run, scratch):
        if args.only and name not in args.only:
            continue
        # The budget and the stage limits are the lent GPU's minutes; a dry run checks that the
        # script works, on CPUs of any speed (a 2-core AVX2 machine with other work beside it took
        # 8 min), so it gets three times as long.
        budget = args.budget_s * (3 if args.dry_run else 1)
        limit = limit * (3 if args.dry_run else 1)
        left = budget - (time.perf_counter() - t_start)
        if left < 20:
            results.append((name, 'not run (budget)', 0.0, ''))
            continue
        if root is None and name not in ('stack', 'tests'):
            results.append((name, 'not run (no data root)', 0.0, ''))
            continue
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                                  timeout=min(limit, left))
            status = 'ok' if proc.returncode == 0 else f'FAIL (rc {proc.returncode})'
            text = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            status = f'FAIL (over {min(limit, left):.0f} s)'
            text = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
        secs = time.perf_counter() - t0
        with open(osp.join(scratch, f'{name}.log'), 'w') as f:
            f.write(' '.join(cmd) + '\n\n' + text)
        head = _headline(name, out, text)
        if status != 'ok' and not head:
            head = next((x for x in reversed(text.splitlines()) if x.strip()), '')[-300:]
        results.append((name, status, secs, head))
        print(f'gpu_check: {name}: {status} in {secs:.0f} s: {head}', flush=True)
    _write_summary(out, results, args.dry_run, time.perf_counter() - t_start)
    return 0 if all(r[1] == 'ok' for r in results) else 1


def _write_summary(out: str, results: list, dry: bool, total: float) -> None:
    import torch

    from fuller.analysis.benchmarks.common import machine_info

    info = machine_info(torch.device('cuda' if torch.cuda.is_available() and not dry else 'cpu'))
    lines = ['# GPU check' + (' (CPU dry run: tiny sizes, no CUDA)' if dry else ''), '',
             f'`bash tools/gpu_check.sh {" ".join(sys.argv[1:])}`: {total:.0f} s in all', '',
             '| ' + ' | '.join(f'{k}: {v}' for k, v in info.items()) + ' |', '',
             '| stage | status | seconds | result |', '|---|---|---|---|']
    lines += [f'| {n} | {s} | {t:.0f} | {h.replace("|", "/")} |' for n, s, t, h in results]
    lines += ['', 'Each stage\'s log: `<scratch>/<stage>.log` (default work_dirs/gpu_check_scratch, not published); '
              'tables: `gpu_demo_train_{naive,fuller}.md`, `gpu_nuscenes_train.md`, `gpu_vtransform.md`. A stage that '
              'failed names the first error; `stack` says which part of the CUDA stack is missing.']
    with open(osp.join(out, 'gpu_check.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(out, 'gpu_check.json'), 'w') as f:
        json.dump({'machine': info, 'dry_run': dry, 'total_s': total,
                   'stages': [dict(zip(('stage', 'status', 'seconds', 'result'), r)) for r in results]}, f, indent=2)
    print(f'gpu_check: wrote {osp.join(out, "gpu_check.md")}')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='FULLER GPU check: the CUDA stack, GPU tests and GPU timings in one run')
    p.add_argument('--dry-run', action='store_true', help='the same stages on the CPU at tiny sizes (what CI runs)')
    p.add_argument('--out', default=osp.join('work_dirs', 'gpu_check'),
                   help='output folder (default work_dirs/gpu_check; docs/benchmarks needs --publish)')
    p.add_argument('--publish', action='store_true', help='allow writing into docs/')
    p.add_argument('--data-root', help='a nuScenes-format root with infos (default: a tiny demo root made here)')
    p.add_argument('--scratch', default=osp.join('work_dirs', 'gpu_check_scratch'),
                   help='logs, the tiny demo root and the DDP run (default work_dirs/gpu_check_scratch)')
    p.add_argument('--budget-s', type=float, default=480,
                   help='stop starting stages after this many seconds (three times as long in a dry run)')
    p.add_argument('--only', nargs='+', help='run only these stages')
    args = p.parse_args(argv)
    refuse_docs_without_publish(args.out, args.publish, 'gpu_check')
    return run_check(args)


if __name__ == '__main__':
    sys.exit(main())
