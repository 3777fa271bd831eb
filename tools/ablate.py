"""Run an ablation (variants x seeds) over a base config, evaluate each run, and write the
results table and plots.

A variant is a fragment in ``configs/ablation/`` (``fuller``, ``naive``, ``det_only``,
``camera_only``, the torchjd rules, the loss-weighting baselines, ...) merged over ``--base``
(any config: the demo, nuScenes, your fork); the composed config of each variant is written to
``<work-dir>/configs/<variant>.py``. Each run trains with ``tools/train.py`` and is evaluated
with ``tools/test.py`` in ``<work-dir>/<variant>/seed<k>/``; finished runs (with a ``metrics.json``) are reused, so
an interrupted ablation continues where it stopped. The report is a markdown table of
mean ± std over seeds (mAP, NDS, mIoU, per-class IoU, gradient-conflict statistics), a JSON
of every run, and PNG plots of the per-task losses, the cosine between the two task
gradients at the shared feature, and the camera/LiDAR gradient-magnitude ratio.

Example (the committed demo study, at half the main job's schedule):
    python tools/ablate.py --seeds 0 1 2 --with configs/ablation/schedules/demo-450it.py --notes notes.md
    python tools/ablate.py --report-only --with configs/ablation/schedules/demo-450it.py --notes notes.md
    python tools/ablate.py --base configs/fuller/naive_lc_swint_8x4-20e_nuscenes-det-map.py \
        --variants naive fuller --work-dir work_dirs/ablation_nuscenes --out work_dirs/ablation_nuscenes.md
"""

import argparse
import datetime
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from fuller.engine.config import apply_variant  # noqa: E402
from fuller.utils.report import cpu_model  # noqa: E402
from fuller.visualization.curves import read_scalars  # noqa: E402

# The committed demo study: the six variants of the paper's ablation, then other inter-task rules
# and loss-weighting baselines (imtlg, alignedmtl, camera_only, lidar_only: add them with --variants).
DEMO_VARIANTS = ['det_only', 'map_only', 'naive', 'inter_only', 'intra_only', 'fuller',
                 'intra_task_only', 'fuller_task_intra',
                 'pcgrad', 'mgda', 'upgrad', 'cagrad', 'nashmtl', 'uncertainty', 'gradnorm', 'dwa']
DEMO_BASE = osp.join('configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
VARIANT_DIR = osp.join('configs', 'ablation')


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Run and report an ablation over configs and seeds')
    p.add_argument('--base', default=DEMO_BASE, help='the config every variant is applied to')
    p.add_argument('--variants', nargs='+', default=DEMO_VARIANTS,
                   help=f'names of fragments in {VARIANT_DIR}/ or paths of variant files')
    p.add_argument('--with', dest='extra', nargs='+', default=[],
                   help=f'fragments merged over every variant, e.g. {VARIANT_DIR}/optimizers/sgd.py; '
                        'run names get "+<fragment>"')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'ablation_demo'))
    p.add_argument('--out', default=osp.join('docs', 'results', 'ablation_demo.md'),
                   help='markdown report; the JSON and plots go next to it')
    p.add_argument('--cfg-options', nargs='+', default=[], help='passed to every training run')
    p.add_argument('--report-only', action='store_true', help='do not train; report the finished runs')
    p.add_argument('--notes', help='markdown file appended to the report (the analysis of the results)')
    return p.parse_args()


def run_name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def split_run(name: str) -> tuple[str, str]:
    """``'<variant>+<fragment>...'`` (how :func:`compose` names a run) -> ``(variant, '+<fragment>...')``."""
    variant, sep, fragments = name.partition('+')
    return variant, sep + fragments


def variant_path(variant: str) -> str:
    return variant if variant.endswith('.py') else osp.join(VARIANT_DIR, f'{variant}.py')


def compose(base: str, variants: list[str], work_dir: str, extra: list[str] = ()) -> list[str]:
    """Write each variant (then the ``extra`` fragments) applied to ``base`` to
    ``<work_dir>/configs/<variant>[+<extra>...].py``; their paths."""
    out_dir = osp.join(work_dir, 'configs')
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for v in variants:
        name = '+'.join([run_name(v), *(run_name(e) for e in extra)])
        path = osp.join(out_dir, f'{name}.py')
        apply_variant(base, variant_path(v), *extra).dump(path)
        paths.append(path)
    return paths


def last_checkpoint(run_dir: str) -> str:
    path = osp.join(run_dir, 'last_checkpoint')
    if not osp.isfile(path):
        raise FileNotFoundError(f'ablate: no last_checkpoint in {run_dir}; did training fail? see its log')
    with open(path) as f:
        return f.read().strip()


def run_one(config: str, seed: int, run_dir: str, cfg_options: list[str]) -> None:
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.time()
    train = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', run_dir,
             '--cfg-options', f'randomness.seed={seed}', *cfg_options]
    with open(osp.join(run_dir, 'train.out'), 'w') as log:
        subprocess.run(train, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    t_train = time.time() - t0
    test = [sys.executable, osp.join(REPO, 'tools', 'test.py'), config, last_checkpoint(run_dir), '--work-dir', run_dir]
    with open(osp.join(run_dir, 'test.out'), 'w') as log:
        subprocess.run(test, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    with open(osp.join(run_dir, 'run_info.json'), 'w') as f:
        json.dump({'config': config, 'seed': seed, 'train_s': t_train, 'total_s': time.time() - t0,
                   'cfg_options': cfg_options}, f, indent=2)


def collect(configs: list[str], seeds: list[int], work_dir: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for config in configs:
        name = run_name(config)
        for seed in seeds:
            run_dir = osp.join(work_dir, name, f'seed{seed}')
            path = osp.join(run_dir, 'metrics.json')
            if not osp.isfile(path):
                continue
            with open(path) as f:
                metrics = json.load(f)['metrics']
            info = {}
            if osp.isfile(osp.join(run_dir, 'run_info.json')):
                with open(osp.join(run_dir, 'run_info.json')) as f:
                    info = json.load(f)
            runs.setdefault(name, []).append({'seed': seed, 'metrics': metrics, 'scalars': read_scalars(run_dir),
                                              'info': info})
    return runs


def _fmt(values: list[float], scale: float = 100.0) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64) * scale
    if not len(v):
        return '–'
    if len(v) == 1:  # one seed has no spread to report
        return f'{v[0]:.1f}'
    return f'{v.mean():.1f} ± {v.std(ddof=1):.1f}'


def _geomean(r: np.ndarray) -> float | None:
    """Geometric mean over the finite, positive entries of ``r``; ``None`` when there are none."""
    r = r[np.isfinite(r) & (r > 0)]
    return float(np.exp(np.log(r).mean())) if len(r) else None


def conflict_stats(scalars: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    if 'calib/cos' in scalars:
        cos = scalars['calib/cos'][np.isfinite(scalars['calib/cos'])]
        out['cos_mean'] = float(cos.mean())
        out['conflict_frac'] = float((cos < 0).mean())
    ratios = {}
    if 'calib/grad_norm_det' in scalars and 'calib/grad_norm_map' in scalars:
        n = min(len(scalars['calib/grad_norm_det']), len(scalars['calib/grad_norm_map']))
        with np.errstate(divide='ignore', invalid='ignore'):
            ratios['det_map_norm_ratio'] = scalars['calib/grad_norm_det'][:n] / scalars['calib/grad_norm_map'][:n]
    for key, name in (('calib/cam_lidar_ratio_after', 'cam_lidar_ratio_reaching'),
                      ('calib/cam_lidar_ratio_before', 'cam_lidar_ratio_before')):
        if key in scalars:
            ratios[name] = scalars[key]
    out.update({k: g for k, r in ratios.items() if (g := _geomean(r)) is not None})
    return out


# Paired comparisons reported under the table: (variant, reference). Each intra variant is
# compared with the run that differs from it only by the intra calibration: against naive
# without an inter rule, against inter-only with FULLER's rule.
COMPARISONS = [('fuller', 'naive'), ('inter_only', 'naive'), ('intra_only', 'naive'), ('intra_task_only', 'naive'),
               ('fuller', 'inter_only'), ('fuller_task_intra', 'inter_only'), ('fuller_task_intra', 'naive')]


def paired_difference(a: dict[int, float], b: dict[int, float], n_boot: int = 10000, seed: int = 0) -> dict | None:
    """``a - b`` over the seeds both have: mean, a 95% bootstrap interval (seeds resampled with
    replacement) and the exact two-sided sign-flip permutation p-value (all ``2^n`` sign
    patterns of the per-seed differences). ``None`` below two paired seeds."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * len(d))).reshape(len(d), -1).T
    null = np.abs((signs * d).mean(1))
    p = float((null >= abs(d.mean()) - 1e-12).mean())
    return {'n': len(d), 'mean': float(d.mean()), 'ci95': [float(np.percentile(boots, 2.5)),
                                                           float(np.percentile(boots, 97.5))], 'p': p}


def comparison_lines(runs: dict[str, list[dict]]) -> tuple[list[str], dict]:
    """Markdown rows and JSON of :data:`COMPARISONS` for mAP and mIoU (in points)."""
    rows, out = [], {}
    # Runs composed with --with fragments are named '<variant>+<fragment>...': compare runs that
    # share their fragments (fuller+sgd with naive+sgd), never across them.
    suffixes = sorted({split_run(name)[1] for name in runs})
    pairs = [(v + sfx, ref + sfx) for sfx in suffixes for v, ref in COMPARISONS]
    for v, ref in pairs:
        if v not in runs or ref not in runs:
            continue
        for key, label in (('det/mAP', 'mAP'), ('map/mIoU', 'mIoU')):
            a = {r['seed']: r['metrics'][key] for r in runs[v] if key in r['metrics']}
            b = {r['seed']: r['metrics'][key] for r in runs[ref] if key in r['metrics']}
            res = paired_difference(a, b)
            if res is None:
                continue
            out[f'{v}-{ref}/{label}'] = res
            lo, hi = res['ci95']
            rows.append(f'| {v} − {ref} | {label} | {res["n"]} | {100 * res["mean"]:+.1f} | '
                        f'[{100 * lo:+.1f}, {100 * hi:+.1f}] | {res["p"]:.3f} |')
    if rows:
        rows = ['', 'Paired by seed (same seed, same data order): difference in points, 95% bootstrap interval '
                'over seeds, exact sign-flip permutation p-value (with n seeds the smallest possible p is 2/2^n).',
                '', '| comparison | metric | seeds | mean diff | 95% CI | p |', '|---|---|---|---|---|---|', *rows]
    return rows, out


def map_classes_of(runs: dict[str, list[dict]]) -> list[str]:
    """The map classes the runs report (``map/IoU_<class>``), in the metric's order."""
    out = []
    for rs in runs.values():
        for r in rs:
            out += [k[len('map/IoU_'):] for k in r['metrics'] if k.startswith('map/IoU_') and k[8:] not in out]
    return out


def write_report(runs: dict[str, list[dict]], out: str, configs: list[str], seeds: list[int],
                 cfg_options: list[str], notes: str | None = None, base: str = DEMO_BASE,
                 extra: list[str] = ()) -> None:
    import torch

    from fuller.visualization import plot_curves

    out_dir = osp.splitext(out)[0]
    os.makedirs(out_dir, exist_ok=True)
    rel = osp.basename(out_dir)
    names = [run_name(c) for c in configs if run_name(c) in runs]

    def col(name: str, key: str) -> list:
        return [r['metrics'].get(key) for r in runs[name] if key in r['metrics']]

    map_classes = map_classes_of(runs)
    names_arg = [split_run(run_name(c))[0] for c in configs]  # the variants, without the --with fragments
    variants_arg = '' if names_arg == DEMO_VARIANTS else ' --variants ' + ' '.join(names_arg)
    base_arg = '' if base == DEMO_BASE else f' --base {base}'
    with_arg = (' --with ' + ' '.join(extra)) if extra else ''
    lines = [
        f'# Ablation over `{run_name(base)}`',
        '',
        f'Generated by `python tools/ablate.py{base_arg}{variants_arg}{with_arg} --seeds {" ".join(map(str, seeds))}` on '
        f'{datetime.date.today().isoformat()}: {cpu_model()}, '
        f'{os.cpu_count()} cores, torch {torch.__version__}. '
        f'Each run: the variant of `{VARIANT_DIR}/` applied to `{base}` (its model, data and schedule)'
        + (f', then {", ".join(f"`{e}`" for e in extra)} (runs named `<variant>+<fragment>`)' if extra else '') + ', '
        'trained on the training split and evaluated with `tools/test.py` (nuScenes devkit '
        'mAP/NDS, BEV map IoU). Numbers are mean ± std over seeds (the value alone for one seed), in %.'
        + (f' Extra options: `{" ".join(cfg_options)}`.' if cfg_options else ''),
        '',
        '| variant | seeds | mAP | NDS | mIoU | ' + ' | '.join(map_classes) + ' | task-grad cos (mean) | '
        'conflict iters | det/map grad norm | cam/LiDAR grad ratio reaching branches | min/run |',
        '|---' * (10 + len(map_classes)) + '|',
    ]
    summary = {}
    for name in names:
        stats = [conflict_stats(r['scalars']) for r in runs[name]]
        minutes = [r['info'].get('total_s', np.nan) / 60 for r in runs[name]]
        row = {
            'mAP': col(name, 'det/mAP'), 'NDS': col(name, 'det/NDS'), 'mIoU': col(name, 'map/mIoU'),
            **{c: col(name, f'map/IoU_{c}') for c in map_classes},
            'cos_mean': [s['cos_mean'] for s in stats if 'cos_mean' in s],
            'conflict_frac': [s['conflict_frac'] for s in stats if 'conflict_frac' in s],
            'det_map_norm_ratio': [s['det_map_norm_ratio'] for s in stats if 'det_map_norm_ratio' in s],
            'cam_lidar_ratio_reaching': [s['cam_lidar_ratio_reaching'] for s in stats
                                         if 'cam_lidar_ratio_reaching' in s],
        }
        summary[name] = {'seeds': [r['seed'] for r in runs[name]], **row, 'minutes': minutes}
        cos = f'{np.mean(row["cos_mean"]):.3f}' if row['cos_mean'] else '–'
        frac = f'{100 * np.mean(row["conflict_frac"]):.0f}%' if row['conflict_frac'] else '–'
        norms = f'{np.exp(np.mean(np.log(row["det_map_norm_ratio"]))):.1f}' if row['det_map_norm_ratio'] else '–'
        ratio = f'{np.mean(row["cam_lidar_ratio_reaching"]):.3f}' if row['cam_lidar_ratio_reaching'] else '–'
        lines.append(f'| {name} | {len(runs[name])} | {_fmt(row["mAP"])} | {_fmt(row["NDS"])} | {_fmt(row["mIoU"])} | '
                     + ' | '.join(_fmt(row[c]) for c in map_classes)
                     + f' | {cos} | {frac} | {norms} | {ratio} | {np.nanmean(minutes):.1f} |')
    comparisons, paired = comparison_lines(runs)
    lines += [
        '',
        '*task-grad cos*: cosine between the detection and map gradients at the shared BEV feature, '
        'before inter-task calibration, averaged over iterations; *conflict iters*: share of '
        'iterations where it is negative; *det/map grad norm*: geometric mean over iterations of '
        'the ratio of the two task gradients\' norms there; *cam/LiDAR grad ratio reaching branches*: geometric mean '
        'over iterations of ||grad into the camera BEV|| / ||grad into the LiDAR BEV|| after '
        'intra-gradient calibration (1.0 when calibrated; the raw ratio for the others).',
        *comparisons,
        '',
        f'![detection loss]({rel}/det_loss.png)',
        f'![map loss]({rel}/map_loss.png)',
        f'![task-gradient cosine]({rel}/task_grad_cos.png)',
        f'![camera/LiDAR gradient ratio]({rel}/cam_lidar_ratio.png)',
        '',
    ]
    if notes:
        with open(notes) as f:
            lines += ['', f.read()]
    with open(out, 'w') as f:
        f.write('\n'.join(lines))
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        per_run = {n: [{'seed': r['seed'], 'metrics': r['metrics'], 'info': r['info']} for r in rs]
                   for n, rs in runs.items()}
        json.dump({'summary': summary, 'paired': paired, 'runs': per_run}, f, indent=2)

    def mean_curve(name: str, key: str):
        curves = [r['scalars'][key] for r in runs[name] if key in r['scalars']]
        if not curves:
            return None
        n = min(len(c) for c in curves)
        return np.arange(1, n + 1), np.nanmean([c[:n] for c in curves], 0)

    def det_total(r: dict) -> np.ndarray | None:
        keys = [k for k in r['scalars'] if k.startswith('det.loss')]
        return sum(r['scalars'][k] for k in keys) if keys else None

    det_series, map_series = {}, {}
    for name in names:
        det = [d for d in (det_total(r) for r in runs[name]) if d is not None]
        if det:
            n = min(len(d) for d in det)
            det_series[name] = {'': (np.arange(1, n + 1), np.mean([d[:n] for d in det], 0))}
        m = mean_curve(name, 'map.loss_focal')
        if m is not None:
            map_series[name] = {'': m}
    plot_curves(osp.join(out_dir, 'det_loss.png'), det_series, 'detection loss (mean over seeds)',
                'Detection training loss', logy=True, smooth=10)
    plot_curves(osp.join(out_dir, 'map_loss.png'), map_series, 'map focal loss (mean over seeds)',
                'Map segmentation training loss', logy=True, smooth=10)
    cos = {n: {'': c} for n in names if (c := mean_curve(n, 'calib/cos')) is not None}
    plot_curves(osp.join(out_dir, 'task_grad_cos.png'), cos, 'cos(g_det, g_map)',
                'Task-gradient cosine at the shared feature (before calibration)', hline=0.0, smooth=10)
    ratio = {n: {'': c} for n in names if (c := mean_curve(n, 'calib/cam_lidar_ratio_after')) is not None}
    plot_curves(osp.join(out_dir, 'cam_lidar_ratio.png'), ratio, '||g_cam|| / ||g_lidar||',
                'Gradient magnitude reaching camera vs LiDAR BEV', hline=1.0, logy=True, smooth=10)
    print(f'ablate: wrote {out} and plots in {out_dir}')


def main() -> None:
    args = parse_args()
    for v in args.variants:
        if not osp.isfile(variant_path(v)):
            raise SystemExit(f'ablate: variant not found: {variant_path(v)} (names are files in {VARIANT_DIR}/)')
    if not osp.isfile(args.base):
        raise SystemExit(f'ablate: base config not found: {args.base}')
    for e in args.extra:
        if not osp.isfile(e):
            raise SystemExit(f'ablate: fragment not found: {e}')
    args.configs = compose(args.base, args.variants, args.work_dir, args.extra)
    if not args.report_only:
        for seed in args.seeds:  # seed-major: a cut-short study still has whole seeds
            for config in args.configs:
                run_dir = osp.join(args.work_dir, run_name(config), f'seed{seed}')
                if osp.isfile(osp.join(run_dir, 'metrics.json')):
                    print(f'ablate: {run_dir} done, reused', flush=True)
                    continue
                print(f'ablate: training {run_name(config)} seed {seed} -> {run_dir}', flush=True)
                t0 = time.time()
                run_one(config, seed, run_dir, args.cfg_options)
                print(f'ablate: {run_name(config)} seed {seed} finished in {(time.time() - t0) / 60:.1f} min',
                      flush=True)
    runs = collect(args.configs, args.seeds, args.work_dir)
    if not runs:
        raise SystemExit(f'ablate: no finished runs under {args.work_dir}')
    write_report(runs, args.out, args.configs, args.seeds, args.cfg_options, args.notes, args.base, args.extra)


if __name__ == '__main__':
    main()
