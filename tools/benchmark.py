"""Benchmarks: calibration cost per train step, BEV pooling, data pipeline, training throughput.

Each sub-command writes ``<name>.json`` and ``<name>.md`` under ``--out`` (default
``work_dirs/benchmarks/``; the project's published tables in ``docs/benchmarks/`` are written
only with ``--publish``) with the machine, library versions, config and date. The benchmarks
themselves are :mod:`fuller.analysis.benchmarks`, one module per sub-command.

    python tools/benchmark.py step     # train-step time: plain vs FULLER vs other rules vs param-level PCGrad
    python tools/benchmark.py bevpool  # BEV pooling forward+backward, nuScenes-sized inputs
    python tools/benchmark.py vtransform  # view-transform pooling: frustum-free vs materialised (time, memory)
    python tools/benchmark.py data     # training pipeline samples/s per worker, vs one GPU's consumption
    python tools/benchmark.py train    # samples/s and peak memory, synthetic inputs (fp32 and bf16)
    python tools/benchmark.py modules  # forward+backward time and peak memory per module (BEVFusion's nuScenes detector)

Timings are interleaved across variants (one step of each in turn, repeated) after a warm-up,
so slow drifts of the machine affect all variants alike; ratios are of medians.
"""

import argparse
import os.path as osp

from fuller.utils.cli import refuse_docs_without_publish
from fuller.utils.quiet import quiet_third_party_warnings

quiet_third_party_warnings()

import torch  # noqa: E402

from fuller.analysis.benchmarks import (  # noqa: E402
    BEVFUSION_DET_CONFIG,
    DEFAULT_MODULES,
    RULES,
    bench_bevpool,
    bench_data,
    bench_modules,
    bench_step,
    bench_train,
    bench_vtransform,
)
from fuller.analysis.benchmarks.common import DEMO_FULLER_CONFIG, points_arg  # noqa: E402
from fuller.engine import reported_as_exit  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    from fuller.utils.cli import ConfigOptionsAction

    p = argparse.ArgumentParser(description='FULLER benchmarks')
    sub = p.add_subparsers(dest='cmd', required=True)

    def common(sp, warmup: int, iters: int) -> None:
        sp.add_argument('--out', default=osp.join('work_dirs', 'benchmarks'),
                        help='output folder (default: work_dirs/benchmarks; docs/ needs --publish)')
        sp.add_argument('--publish', action='store_true',
                        help='allow writing into docs/ (the project\'s committed tables)')
        sp.add_argument('--name', help='output file stem (default: the sub-command)')
        sp.add_argument('--warmup', type=int, default=warmup)
        sp.add_argument('--iters', type=int, default=iters)
        sp.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')

    s = sub.add_parser('step', help='train-step time per calibration method')
    common(s, 2, 10)
    s.add_argument('--config', default=DEMO_FULLER_CONFIG)
    s.add_argument('--batch-size', type=int, default=2)
    s.add_argument('--methods', nargs='*', default=list(RULES))
    s.add_argument('--no-param-level', dest='param_level', action='store_false')
    s.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction, help='override config keys')
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
    d = sub.add_parser('data', help='training pipeline samples/s per worker, next to one GPU\'s consumption')
    common(d, 2, 20)
    d.add_argument('--config', nargs='+', default=[DEMO_FULLER_CONFIG], help='one row per config')
    d.add_argument('--data-root', help='point the configs at this nuScenes-format root (infos and GT database in it)')
    d.add_argument('--keyframe', help='a single real nuScenes keyframe folder (e.g. ../shared/data/'
                                      'nuscenes_real_keyframe): builds a scratch root under work_dirs/benchmarks/ '
                                      'and times on it')
    t = sub.add_parser('train', help='training throughput on synthetic inputs')
    common(t, 3, 10)
    t.add_argument('--config', default=DEMO_FULLER_CONFIG)
    t.add_argument('--batch-size', type=int, default=2)
    t.add_argument('--points', type=points_arg, default=250_000,
                   help="random points per sample (nuScenes, 10 sweeps: ~250k), or 'real': the samples' own points "
                        'and images')
    t.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16', 'fp16'],
                   help='fp16 (CUDA only): autocast float16 with the dynamic loss scale')
    t.add_argument('--pool-impls', nargs='+', help='view-transform pooling paths to compare, e.g. csr indexed '
                                                   '(each in its own process)')
    t.add_argument('--rounds', type=int, default=2, help='with several --pool-impls: fresh processes per path, '
                                                          'in A B B A order')
    t.add_argument('--data-root', help='take the calibration, boxes and map masks from this nuScenes-format tree '
                                       '(e.g. data/nuscenes-demo/ when nuScenes is not on disk)')
    t.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                   help='override config keys (e.g. geometry.image_size="(64,176)" for a quick run)')
    m = sub.add_parser('modules', help='forward+backward time and peak memory per module, at the config\'s sizes')
    common(m, 1, 3)
    m.add_argument('--config', default=BEVFUSION_DET_CONFIG)
    m.add_argument('--modules', nargs='+', default=list(DEFAULT_MODULES), help='module names in the model')
    m.add_argument('--points', type=points_arg, default=250_000,
                   help="random points per sample (nuScenes, 10 sweeps: ~250k), or 'real': the sample's own points "
                        'and images')
    m.add_argument('--data-root', help='calibration and boxes from this nuScenes-format tree (e.g. data/nuscenes-demo/)')
    m.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16', 'fp16'],
                   help='precision: the forward under autocast in bf16/fp16 (fp16: CUDA only), as in training')
    m.add_argument('--only', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    refuse_docs_without_publish(args.out, args.publish, 'benchmark')
    with reported_as_exit(None, 'benchmark'):  # a bad argument or config: one line, FULLER_DEBUG=1 for more
        {'step': bench_step, 'bevpool': bench_bevpool, 'vtransform': bench_vtransform, 'data': bench_data,
         'train': bench_train, 'modules': bench_modules}[args.cmd](args)


if __name__ == '__main__':
    main()
