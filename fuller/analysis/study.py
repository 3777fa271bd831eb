"""The ablation study's statistics and report (``tools/ablate.py`` is its command line).

A study is a set of runs ``<work_dir>/<run>/seed<k>/`` (a run: a variant of
``configs/ablation/`` composed over a base config, possibly with ``--with`` fragments, named
``<variant>[+<fragment>...]``). :func:`collect` reads their metrics and logged scalars,
:func:`conflict_stats` summarises the gradient diagnostics of one run, :func:`paired_difference`
and :func:`comparison_lines` compare variants seed by seed, and :func:`write_report` writes the
markdown table, the JSON of every run and the plots.

A study outlives the machine it ran on through its **archive** (``tools/ablate.py --archive``;
for the committed demo study ``docs/results/ablation_demo/runs/``): one small JSON record per
finished run (:func:`write_record`: metrics, the sensor-dropped metrics, run info, the gradient
diagnostics and the curves the plots draw), committed with the report. :func:`collect` takes a run
from its folder when it is there, else from its record, so a later session on a fresh checkout
adds seeds and variants to the same table without retraining what has finished.
"""

import datetime
import hashlib
import json
import os
import os.path as osp

import numpy as np

from fuller.utils.io import write_json_atomic
from fuller.utils.report import cpu_model
from fuller.visualization.curves import read_scalars

__all__ = ['COMPARISONS', 'DEMO_BASE', 'DEMO_VARIANTS', 'SINGLE_MODALITY', 'VARIANT_DIR', 'collect',
           'comparison_lines', 'config_digest', 'conflict_stats', 'demo_worlds', 'fmt_cell', 'is_stale', 'map_classes_of',
           'modality_conditions', 'paired_difference', 'plot_study', 'plot_tradeoff', 'pretrained_digests',
           'read_record', 'record_path', 'reliance_lines', 'run_name', 'split_run', 'stale_reason', 'tradeoff_points',
           'write_record', 'write_report']

# The committed demo study: the single-task and single-modality models, the six variants of the
# paper's ablation, modality dropout (the simple baseline for modality balance), then other
# inter-task rules (torchjd's and the others the configs have) and loss-weighting baselines.
DEMO_VARIANTS = ['det_only', 'map_only', 'camera_only', 'lidar_only', 'camera_map_only', 'lidar_map_only', 'naive',
                 'inter_only', 'intra_only', 'fuller', 'intra_task_only', 'fuller_task_intra', 'modality_dropout',
                 'pcgrad', 'mgda', 'upgrad', 'cagrad', 'nashmtl', 'imtlg', 'alignedmtl', 'uncertainty', 'gradnorm',
                 'dwa']
DEMO_BASE = osp.join('configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
VARIANT_DIR = osp.join('configs', 'ablation')



def run_name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def split_run(name: str) -> tuple[str, str]:
    """``'<variant>+<fragment>...'`` (how :func:`compose` names a run) -> ``(variant, '+<fragment>...')``."""
    variant, sep, fragments = name.partition('+')
    return variant, sep + fragments


def record_path(archive: str, name: str, seed: int) -> str:
    """Where the archive keeps run ``name``'s seed ``seed``."""
    return osp.join(archive, name, f'seed{seed}.json')


def _config(config):
    """A config path read (``Config.fromfile``), or a Config given as such."""
    from mmengine.config import Config

    return Config.fromfile(config) if isinstance(config, str) else config


def config_digest(config) -> str:
    """What a run was trained with, as 16 hex digits: the SHA-256 of the composed config's values
    (``Config.fromfile(config).to_dict()`` as canonical JSON; comments and formatting do not
    count). Recorded in every run's ``run_info.json`` and archive record, so that a run is reused
    only by the configuration it was trained with. ``config``: a path or a read Config."""
    values = json.dumps(_config(config).to_dict(), sort_keys=True, default=repr)
    return hashlib.sha256(values.encode()).hexdigest()[:16]


def pretrained_digests(config, root: str = '.') -> dict[str, str]:
    """The run's starting weights: each ``Pretrained`` checkpoint of the config's model (paths
    as the config gives them, relative ones under ``root``) -> the first 16 hex digits of its
    SHA-256. A pretraining file is made on each machine, so its content is part of what a run
    was trained with; files absent here are left out."""
    from fuller.engine.config import pretrained_files

    out = {}
    for path in pretrained_files(_config(config).model):
        full = path if osp.isabs(path) else osp.join(root, path)
        if osp.isfile(full):
            with open(full, 'rb') as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()[:16]
    return out


def demo_worlds(config, root: str = '.') -> dict[str, str]:
    """The run's data, where it is the demo world: each data root of the config (train, val,
    test; relative ones under ``root``) that holds a demo manifest -> its world version
    (``fuller.demo.WORLD_VERSION`` when it was made). The config digest does not see a change of
    the world (the configs stay the same), so it is recorded beside it; real nuScenes has none."""
    from fuller.demo import demo_world_version
    from fuller.engine.config import data_roots

    out = {}
    for path in data_roots(_config(config)):
        version = demo_world_version(path if osp.isabs(path) else osp.join(root, path))
        if version is not None:
            out[path] = version
    return out


def trained_with(config: str, root: str = '.') -> dict:
    """What a run of ``config`` trains with today, as its run info records it: ``config_digest``
    (:func:`config_digest`), ``pretrained`` (:func:`pretrained_digests`) and ``worlds``
    (:func:`demo_worlds`), from one reading of the config."""
    cfg = _config(config)
    return {'config_digest': config_digest(cfg), 'pretrained': pretrained_digests(cfg, root),
            'worlds': demo_worlds(cfg, root)}


def stale_reason(info: dict, digest: str, pretrained: dict[str, str] | None = None,
                 worlds: dict[str, str] | None = None) -> str | None:
    """Why a run with run info ``info`` was trained with something else than today's config
    (``digest``, :func:`config_digest`), pretrained files (``pretrained``,
    :func:`pretrained_digests`) or demo world (``worlds``, :func:`demo_worlds`), or None when it
    was not. Only what both sides know is compared: runs recorded before digests or world
    versions were kept, and files or data absent here, do not count."""
    if 'config_digest' in info and info['config_digest'] != digest:
        return f'another config (digest {info["config_digest"]}, today {digest})'
    for key, what, today in (('pretrained', 'other pretrained weights', pretrained),
                             ('worlds', 'another demo world', worlds)):
        recorded = info.get(key) or {}
        changed = sorted(p for p, v in (today or {}).items() if recorded.get(p, v) != v)
        if changed:
            return f'{what} (' + ', '.join(f'{p}: {recorded[p]}, today {today[p]}' for p in changed) + ')'
    return None


def is_stale(info: dict, digest: str, pretrained: dict[str, str] | None = None,
             worlds: dict[str, str] | None = None) -> bool:
    """Whether :func:`stale_reason` finds one."""
    return stale_reason(info, digest, pretrained, worlds) is not None


def stale_against(info: dict, today: dict) -> str | None:
    """:func:`stale_reason` against ``today``, a :func:`trained_with` dict."""
    return stale_reason(info, today['config_digest'], today['pretrained'], today['worlds'])


# The logged scalars a record keeps in full (the plots' curves); every other diagnostic is kept
# as its summary (:func:`conflict_stats`).
RECORD_CURVES = ('det.loss', 'map.loss', 'calib/cos', 'calib/cam_lidar_ratio_after')


def write_record(run: dict, path: str) -> None:
    """Archive one finished run (an entry of :func:`collect`) as JSON at ``path``: its seed,
    metrics, sensor-dropped metrics, run info, gradient diagnostics (``stats``) and the curves of
    ``RECORD_CURVES`` (4 significant digits)."""
    curves = {k: [float(f'{v:.4g}') if np.isfinite(v) else None for v in np.asarray(c, np.float64)]
              for k, c in run['scalars'].items() if k.startswith(RECORD_CURVES)}
    record = {'seed': run['seed'], 'metrics': run['metrics'], 'drop': run.get('drop', {}), 'info': run['info'],
              'stats': run['stats'], 'curves': curves}
    os.makedirs(osp.dirname(path), exist_ok=True)
    write_json_atomic(path, record, separators=(',', ':'))


def read_record(path: str) -> dict:
    """A run archived by :func:`write_record`, as :func:`collect` gives it (``archived``: True)."""
    with open(path) as f:
        rec = json.load(f)
    missing = {'seed', 'metrics', 'stats'} - set(rec)
    if missing:
        raise ValueError(f'study archive record {path} lacks {sorted(missing)}')
    scalars = {k: np.array([np.nan if v is None else v for v in c], np.float64) for k, c in rec.get('curves', {}).items()}
    return {'seed': rec['seed'], 'metrics': rec['metrics'], 'drop': rec.get('drop', {}), 'info': rec.get('info', {}),
            'stats': rec['stats'], 'scalars': scalars, 'archived': True}


def collect(configs: list[str], seeds: list[int], work_dir: str, archive: str | None = None,
            root: str = '.', today: dict[str, dict] | None = None) -> dict[str, list[dict]]:
    """run name -> its finished seeds (``metrics.json`` present): metrics, logged scalars, run info,
    ``drop``: sensor -> the metrics with that sensor dropped (``metrics_drop-<sensor>.json``), and
    ``stats``: the gradient diagnostics (:func:`conflict_stats`). A run without a folder under
    ``work_dir`` is taken from ``archive`` (:func:`read_record`) when it holds it and it was
    trained with the config, pretrained files and demo world of today (:func:`stale_against`; relative
    pretrained paths and data roots under ``root``; ``today``: config -> its :func:`trained_with`
    where the caller has it already)."""
    runs: dict[str, list[dict]] = {}
    for config in configs:
        name = run_name(config)
        if archive is not None:
            now = (today or {}).get(config) or trained_with(config, root)
        for seed in seeds:
            run_dir = osp.join(work_dir, name, f'seed{seed}')
            path = osp.join(run_dir, 'metrics.json')
            if not osp.isfile(path):
                if archive is not None and osp.isfile(record_path(archive, name, seed)):
                    rec = read_record(record_path(archive, name, seed))
                    if stale_against(rec['info'], now) is None:
                        runs.setdefault(name, []).append(rec)
                continue
            with open(path) as f:
                metrics = json.load(f)['metrics']
            info = {}
            if osp.isfile(osp.join(run_dir, 'run_info.json')):
                with open(osp.join(run_dir, 'run_info.json')) as f:
                    info = json.load(f)
            drop = {}
            for sensor in ('camera', 'lidar'):
                dpath = osp.join(run_dir, f'metrics_drop-{sensor}.json')
                if osp.isfile(dpath):
                    with open(dpath) as f:
                        drop[sensor] = json.load(f)['metrics']
            scalars = read_scalars(run_dir)
            runs.setdefault(name, []).append({'seed': seed, 'metrics': metrics, 'scalars': scalars,
                                              'stats': conflict_stats(scalars), 'info': info, 'drop': drop})
    return runs


def fmt_cell(values: list[float], scale: float = 100.0) -> str:
    """A table cell: mean ± std over seeds in points, the value alone for one seed, '–' for none."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64) * scale
    if not len(v):
        return '–'
    if len(v) == 1:  # one seed has no spread to report
        return f'{v[0]:.1f}'
    return f'{v.mean():.1f} ± {v.std(ddof=1):.1f}'


def _minutes(values: list[float]) -> str:
    """Mean minutes per run over the runs that recorded their time; '–' when none did."""
    v = [x for x in values if np.isfinite(x)]
    return f'{np.mean(v):.1f}' if v else '–'


def _stats(run: dict) -> dict[str, float]:
    """A run's gradient diagnostics: as collected (or archived), else from its scalars."""
    return run['stats'] if 'stats' in run else conflict_stats(run['scalars'])


def _geomean(r: np.ndarray) -> float | None:
    """Geometric mean over the finite, positive entries of ``r``; ``None`` when there are none."""
    r = r[np.isfinite(r) & (r > 0)]
    return float(np.exp(np.log(r).mean())) if len(r) else None


def conflict_stats(scalars: dict[str, np.ndarray]) -> dict[str, float]:
    """One run's gradient diagnostics over its iterations: the mean task-gradient cosine and the
    share of conflicting iterations, and geometric means of the det/map norm ratio and the
    camera/LiDAR ratios (before and after calibration)."""
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
               ('fuller', 'inter_only'), ('fuller_task_intra', 'inter_only'), ('fuller_task_intra', 'naive'),
               ('modality_dropout', 'naive'), ('intra_only', 'modality_dropout'), ('fuller', 'modality_dropout'),
               # multi-task against single-task (each on the task both have)
               ('naive', 'det_only'), ('fuller', 'det_only'), ('naive', 'map_only'), ('fuller', 'map_only')]


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


SINGLE_MODALITY = ('camera_only', 'lidar_only')


def reliance_lines(runs: dict[str, list[dict]], names: list[str],
                   stats: dict[str, list[dict]] | None = None) -> tuple[list[str], dict]:
    """Markdown rows and JSON of the modality-reliance table: mAP / NDS / mIoU of every fused run
    with its sensors, with the camera dropped and with LiDAR dropped (``tools/test.py
    --drop-modality``), next to the single-modality variants, and the camera/LiDAR gradient
    ratio at the fuser before and after the intra calibration. ``stats``: each run's
    :func:`conflict_stats`, by variant (computed here when not given)."""
    rows, out = [], {}
    keys = (('det/mAP', 'mAP'), ('det/NDS', 'NDS'), ('map/mIoU', 'mIoU'))
    for name in names:
        single = split_run(name)[0] in SINGLE_MODALITY
        if not single and not any(r.get('drop') for r in runs[name]):
            continue
        entry, cells = {}, []
        for key, label in keys:
            for sensor in (None, 'camera', 'lidar'):
                vals = [(r['metrics'] if sensor is None else r.get('drop', {}).get(sensor, {})).get(key)
                        for r in runs[name]]
                vals = [v for v in vals if v is not None]
                entry[f'{label}' + (f'_drop_{sensor}' if sensor else '')] = vals
                cells.append(fmt_cell(vals))
        run_stats = stats[name] if stats and name in stats else [_stats(r) for r in runs[name]]
        for k in ('cam_lidar_ratio_before', 'cam_lidar_ratio_reaching'):
            entry[k] = [st[k] for st in run_stats if k in st]
            cells.append(f'{np.exp(np.mean(np.log(entry[k]))):.3f}' if entry[k] else '–')
        out[name] = entry
        rows.append(f'| {name} | {len(runs[name])} | ' + ' | '.join(cells) + ' |')
    if not rows:
        return [], out
    head = ' | '.join(f'{m} {s}' for m in ('mAP', 'NDS', 'mIoU') for s in ('both', '−camera', '−LiDAR'))
    return ['', '**Modality reliance.** Each camera+LiDAR run evaluated with both sensors, with the camera '
            'dropped and with LiDAR dropped (`tools/test.py --drop-modality`: the dropped sensor\'s encoder is '
            'not run and its BEV map enters the fuser as zeros), next to the single-modality variants (their '
            'own sensor in *both*); the camera/LiDAR gradient ratio at the fuser before and after the intra '
            'calibration (geometric means over iterations; the same number for runs without it).', '',
            f'| variant | seeds | {head} | cam/LiDAR grad before | after |', '|---' * 13 + '|', *rows], out


def map_classes_of(runs: dict[str, list[dict]]) -> list[str]:
    """The map classes the runs report (``map/IoU_<class>``), in the metric's order."""
    out = []
    for rs in runs.values():
        for r in rs:
            out += [k[len('map/IoU_'):] for k in r['metrics'] if k.startswith('map/IoU_') and k[8:] not in out]
    return out


def _machines(runs: dict[str, list[dict]]) -> str:
    """The CPUs the runs trained on (``info['cpu']``), with their run counts."""
    from collections import Counter

    cpus = Counter(r.get('info', {}).get('cpu', 'CPU not recorded') for rs in runs.values() for r in rs)
    return '; '.join(f'{c} ({n} run{"s" if n > 1 else ""})' for c, n in cpus.most_common())


def _report_header(configs: list[str], seeds: list[int], cfg_options: list[str], base: str, extra: list[str],
                   map_classes: list[str], machines: str = '') -> list[str]:
    """The report's title, how it was made (the command, machine, date) and the table's head."""
    import torch

    names_arg = [split_run(run_name(c))[0] for c in configs]  # the variants, without the --with fragments
    variants_arg = '' if names_arg == DEMO_VARIANTS else ' --variants ' + ' '.join(names_arg)
    base_arg = '' if base == DEMO_BASE else f' --base {base}'
    with_arg = (' --with ' + ' '.join(extra)) if extra else ''
    return [
        f'# Ablation over `{run_name(base)}`',
        '',
        f'Generated by `python tools/ablate.py{base_arg}{variants_arg}{with_arg} --seeds {" ".join(map(str, seeds))}` on '
        f'{datetime.date.today().isoformat()}: {cpu_model()}, '
        f'{os.cpu_count()} cores, torch {torch.__version__}.'
        + (f' The runs trained on: {machines} (`min/run` compares only runs of one CPU).' if machines else '')
        + ' '
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


def _summary_row(name: str, runs: list[dict], stats: list[dict], map_classes: list[str]) -> tuple[dict, str]:
    """One variant's numbers over its seeds (the JSON summary) and its table row."""

    def col(key: str) -> list:
        return [r['metrics'].get(key) for r in runs if key in r['metrics']]

    def stat(key: str) -> list:
        return [s[key] for s in stats if key in s]

    minutes = [r['info'].get('total_s', np.nan) / 60 for r in runs]
    row = {'mAP': col('det/mAP'), 'NDS': col('det/NDS'), 'mIoU': col('map/mIoU'),
           **{c: col(f'map/IoU_{c}') for c in map_classes},
           **{k: stat(k) for k in ('cos_mean', 'conflict_frac', 'det_map_norm_ratio', 'cam_lidar_ratio_reaching')}}
    cos = f'{np.mean(row["cos_mean"]):.3f}' if row['cos_mean'] else '–'
    frac = f'{100 * np.mean(row["conflict_frac"]):.0f}%' if row['conflict_frac'] else '–'
    norms = f'{np.exp(np.mean(np.log(row["det_map_norm_ratio"]))):.1f}' if row['det_map_norm_ratio'] else '–'
    ratio = f'{np.mean(row["cam_lidar_ratio_reaching"]):.3f}' if row['cam_lidar_ratio_reaching'] else '–'
    line = (f'| {name} | {len(runs)} | {fmt_cell(row["mAP"])} | {fmt_cell(row["NDS"])} | {fmt_cell(row["mIoU"])} | '
            + ' | '.join(fmt_cell(row[c]) for c in map_classes) + f' | {cos} | {frac} | {norms} | {ratio} | '
            f'{_minutes(minutes)} |')
    return {'seeds': [r['seed'] for r in runs], **row, 'minutes': minutes}, line


_COLUMN_NOTES = (
    '*task-grad cos*: cosine between the detection and map gradients at the shared BEV feature, '
    'before inter-task calibration, averaged over iterations; *conflict iters*: share of '
    'iterations where it is negative; *det/map grad norm*: geometric mean over iterations of '
    'the ratio of the two task gradients\' norms there; *cam/LiDAR grad ratio reaching branches*: geometric mean '
    'over iterations of ||grad into the camera BEV|| / ||grad into the LiDAR BEV|| after '
    'intra-gradient calibration (1.0 when calibrated; the raw ratio for the others).')


def write_report(runs: dict[str, list[dict]], out: str, configs: list[str], seeds: list[int],
                 cfg_options: list[str], notes: str | None = None, base: str = DEMO_BASE,
                 extra: list[str] = ()) -> None:
    """The markdown table ``out``, ``<out>/results.json`` and the plots ``<out>/*.png``."""
    out_dir = osp.splitext(out)[0]
    os.makedirs(out_dir, exist_ok=True)
    rel = osp.basename(out_dir)
    names = [run_name(c) for c in configs if run_name(c) in runs]
    map_classes = map_classes_of(runs)
    stats = {name: [_stats(r) for r in runs[name]] for name in names}
    lines = _report_header(configs, seeds, cfg_options, base, extra, map_classes, _machines({n: runs[n] for n in names}))
    summary = {}
    for name in names:
        summary[name], line = _summary_row(name, runs[name], stats[name], map_classes)
        lines.append(line)
    comparisons, paired = comparison_lines(runs)
    reliance, reliance_json = reliance_lines(runs, names, stats)
    lines += [*reliance, *modality_conditions({n: runs[n] for n in names}), '', _COLUMN_NOTES, *comparisons, '',
              f'![detection loss]({rel}/det_loss.png)',
              f'![map loss]({rel}/map_loss.png)',
              f'![task-gradient cosine]({rel}/task_grad_cos.png)',
              f'![camera/LiDAR gradient ratio]({rel}/cam_lidar_ratio.png)',
              f'![mAP against mIoU]({rel}/task_tradeoff.png)',
              '']
    if notes:
        with open(notes) as f:
            lines += ['', f.read()]
    with open(out, 'w') as f:
        f.write('\n'.join(lines))
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        per_run = {n: [{'seed': r['seed'], 'metrics': r['metrics'], 'drop': r.get('drop', {}), 'info': r['info']}
                       for r in rs]
                   for n, rs in runs.items()}
        json.dump({'summary': summary, 'paired': paired, 'reliance': reliance_json, 'runs': per_run}, f, indent=2)

    plot_study(runs, names, out_dir)
    plot_tradeoff(runs, names, osp.join(out_dir, 'task_tradeoff.png'))
    print(f'ablate: wrote {out} and plots in {out_dir}')


def tradeoff_points(runs: dict[str, list[dict]], names: list[str]) -> tuple[dict, dict]:
    """The mAP-against-mIoU figure's data, in %: ``points[run][input] = [(mIoU, mAP) per seed]``
    for the runs with both tasks (``input``: ``'both'``, and ``'-camera'`` / ``'-LiDAR'`` where the
    run was evaluated with that sensor dropped), and ``single[run] = (metric, values)`` for the
    single-task runs."""
    points, single = {}, {}
    for name in names:
        rs = runs[name]
        both = [r for r in rs if 'det/mAP' in r['metrics'] and 'map/mIoU' in r['metrics']]
        if both:
            entry = {'both': [(100 * r['metrics']['map/mIoU'], 100 * r['metrics']['det/mAP']) for r in both]}
            for sensor, label in (('camera', '-camera'), ('lidar', '-LiDAR')):
                d = [r['drop'][sensor] for r in both if sensor in r.get('drop', {})]
                if d:
                    entry[label] = [(100 * m['map/mIoU'], 100 * m['det/mAP']) for m in d]
            points[name] = entry
        else:
            for key, metric in (('det/mAP', 'mAP'), ('map/mIoU', 'mIoU')):
                vals = [100 * r['metrics'][key] for r in rs if key in r['metrics']]
                if vals:
                    single[name] = (metric, vals)
    return points, single


def plot_tradeoff(runs: dict[str, list[dict]], names: list[str], out_path: str) -> None:
    """mAP against mIoU, one point per variant with its seed spread, and its points with each
    sensor dropped (:func:`fuller.visualization.plot_task_tradeoff`)."""
    from fuller.visualization import plot_task_tradeoff

    points, single = tradeoff_points(runs, names)
    plot_task_tradeoff(out_path, points, single, 'Task balance and modality reliance (mean ± std over seeds)')


def plot_study(runs: dict[str, list[dict]], names: list[str], out_dir: str) -> None:
    """The study's plots in ``out_dir``: detection and map losses, the task-gradient cosine and the
    camera/LiDAR gradient ratio, each the mean over seeds per variant."""
    from fuller.visualization import plot_curves

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


def modality_conditions(runs: dict[str, list[dict]], camera: str = 'camera_only', lidar: str = 'lidar_only',
                        fused: str = 'naive', learned: float = 0.01, camera_map: str = 'camera_map_only',
                        lidar_map: str = 'lidar_map_only') -> list[str]:
    """Markdown lines checking, seed by seed, the three conditions of a world whose sensors
    complement each other as nuScenes' do: (1) each single-modality model learns both tasks
    (mAP and mIoU above ``learned``), camera-only has the higher mIoU and LiDAR-only the higher
    mAP; (2) the fused model beats the better single-modality model on each task; (3) dropping
    either sensor from the fused model costs both tasks. Where the single-task map models
    ``camera_map`` and ``lidar_map`` ran (BEVFusion's map table compares single-modality models
    trained on the map alone), a row compares their mIoU too ('–' for a seed without both).
    Runs are matched by variant name (any ``+<fragment>`` suffix); seeds missing a run or a drop
    evaluation are left out."""
    by_variant = {split_run(n)[0]: rs for n, rs in runs.items()}
    if not all(v in by_variant for v in (camera, lidar, fused)):
        return []

    def seed_map(rs):
        return {r['seed']: r for r in rs}

    cam, lid, fus = (seed_map(by_variant[v]) for v in (camera, lidar, fused))
    seeds = sorted(s for s in set(cam) & set(lid) & set(fus) if set(fus[s].get('drop', {})) == {'camera', 'lidar'})
    if not seeds:
        return []
    checks = {
        '1. each single-modality model learns both tasks': lambda c, li, f: min(
            c['det/mAP'], c['map/mIoU'], li['det/mAP'], li['map/mIoU']) > learned,
        '1. camera-only mIoU > LiDAR-only mIoU': lambda c, li, f: c['map/mIoU'] > li['map/mIoU'],
        '1. LiDAR-only mAP > camera-only mAP': lambda c, li, f: li['det/mAP'] > c['det/mAP'],
        '2. fused mAP > better single-modality mAP': lambda c, li, f: f[0]['det/mAP'] > max(c['det/mAP'],
                                                                                          li['det/mAP']),
        '2. fused mIoU > better single-modality mIoU': lambda c, li, f: f[0]['map/mIoU'] > max(c['map/mIoU'],
                                                                                              li['map/mIoU']),
        '3. dropping the camera costs both tasks': lambda c, li, f: (f[1]['det/mAP'] < f[0]['det/mAP']
                                                                     and f[1]['map/mIoU'] < f[0]['map/mIoU']),
        '3. dropping LiDAR costs both tasks': lambda c, li, f: (f[2]['det/mAP'] < f[0]['det/mAP']
                                                                and f[2]['map/mIoU'] < f[0]['map/mIoU']),
    }
    lines = ['', f'**Sensor conditions** ({camera}, {lidar}, {fused}; seeds {", ".join(map(str, seeds))}):', '',
             '| condition | ' + ' | '.join(f'seed {s}' for s in seeds) + ' |', '|---' * (len(seeds) + 1) + '|']
    for label, check in checks.items():
        cells = []
        for s in seeds:
            f = (fus[s]['metrics'], fus[s]['drop']['camera'], fus[s]['drop']['lidar'])
            cells.append('yes' if check(cam[s]['metrics'], lid[s]['metrics'], f) else '**no**')
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    if camera_map in by_variant and lidar_map in by_variant:
        cam_map, lid_map = seed_map(by_variant[camera_map]), seed_map(by_variant[lidar_map])
        cells = [('yes' if cam_map[s]['metrics']['map/mIoU'] > lid_map[s]['metrics']['map/mIoU'] else '**no**')
                 if s in cam_map and s in lid_map else '–' for s in seeds]
        lines.append('| 1. map alone (BEVFusion\'s setting): camera map-only mIoU > LiDAR map-only mIoU | '
                     + ' | '.join(cells) + ' |')
    return lines
