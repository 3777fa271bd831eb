"""Run an ablation (variants x seeds) over a base config, evaluate each run, and write the
results table and plots.

A variant is a fragment in ``configs/ablation/`` (``fuller``, ``naive``, ``det_only``,
``camera_only``, the torchjd rules, the loss-weighting baselines, ...) merged over ``--base``
(any config: the demo, nuScenes, your fork); the composed config of each variant is written to
``<work-dir>/configs/<variant>.py``. Each run trains with ``tools/train.py`` and is evaluated
with ``tools/test.py`` in ``<work-dir>/<variant>/seed<k>/``; a camera+LiDAR run is evaluated twice
more, with each sensor dropped (``--drop-modality``: ``metrics_drop-camera.json``,
``metrics_drop-lidar.json``). Finished runs (with a ``metrics.json``) are reused and only their
missing evaluations are run (a run whose training finished but whose evaluation did not is
only evaluated), so an interrupted ablation continues where it stopped. Every finished run is also
recorded in the study's archive (``--archive``, default ``<out without .md>/runs/``: for the
committed study ``docs/results/ablation_demo/runs/``, committed with it): a run found there is
not trained again, so the study grows over sessions and machines whose work folders are gone.
Each run records what it was trained with (``config_digest``: a hash of the composed config's
values; ``pretrained``: a hash of each pretrained checkpoint it started from; ``worlds``: the
world version of the demo data it read, ``fuller.demo.WORLD_VERSION`` when the data was made):
an archived run of another config, of other pretrained weights (a pretraining file made again
differently) or of another demo world is trained again, and such a run folder is refused.
The report is a markdown table of
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
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from fuller.utils.cli import refuse_docs_without_publish  # noqa: E402
from fuller.utils.quiet import quiet_third_party_warnings  # noqa: E402
from fuller.utils.report import cpu_model  # noqa: E402

quiet_third_party_warnings()

from fuller.analysis.study import (  # noqa: E402
    DEMO_BASE,
    DEMO_VARIANTS,
    VARIANT_DIR,
    collect,
    read_record,
    record_path,
    run_name,
    stale_against,
    trained_with,
    write_record,
    write_report,
)
from fuller.engine.config import apply_variant  # noqa: E402


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
    p.add_argument('--out', help='markdown report; the JSON and plots go next to it (default: '
                   '<work-dir>/report.md; docs/ needs --publish)')
    p.add_argument('--publish', action='store_true',
                   help="allow writing into docs/ (the project's committed study, e.g. "
                        "--out docs/results/ablation_demo.md --publish)")
    p.add_argument('--cfg-options', nargs='+', default=[], help='passed to every training run')
    p.add_argument('--report-only', action='store_true', help='do not train; report the finished runs')
    p.add_argument('--no-drop', action='store_true',
                   help='skip the evaluations with one sensor dropped (two test passes per camera+LiDAR run)')
    p.add_argument('--notes', help='markdown file appended to the report (the analysis of the results)')
    p.add_argument('--archive', help='folder of the study\'s run records (default: <out without .md>/runs): runs '
                   'found there are reused, finished runs are added')
    return p.parse_args()


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


def is_fused(config: str) -> bool:
    """Whether the composed config is a camera+LiDAR model (both encoders and a fuser)."""
    from mmengine.config import Config

    model = Config.fromfile(config).model
    encoders = model.get('encoders') or {}
    return bool(encoders.get('camera')) and bool(encoders.get('lidar')) and model.get('fuser') is not None


def evaluate(config: str, run_dir: str, drop: str | None = None) -> None:
    """``tools/test.py`` on the run's last checkpoint (with ``--drop-modality drop``)."""
    test = [sys.executable, osp.join(REPO, 'tools', 'test.py'), config, last_checkpoint(run_dir), '--work-dir', run_dir]
    if drop:
        test += ['--drop-modality', drop]
    with open(osp.join(run_dir, f'test_drop-{drop}.out' if drop else 'test.out'), 'w') as log:
        subprocess.run(test, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _write_info(run_dir: str, info: dict) -> None:
    with open(osp.join(run_dir, 'run_info.json'), 'w') as f:
        json.dump(info, f, indent=2)


def run_one(config: str, seed: int, run_dir: str, cfg_options: list[str]) -> None:
    """Train, then evaluate. ``run_info.json`` records the finished training (``train_s``) before
    the evaluation starts, so a run cut off during its evaluation is only re-evaluated."""
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.time()
    train = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', run_dir,
             '--cfg-options', f'randomness.seed={seed}', *cfg_options]
    with open(osp.join(run_dir, 'train.out'), 'w') as log:
        subprocess.run(train, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    info = {'config': config, 'seed': seed, 'train_s': time.time() - t0, 'cfg_options': cfg_options,
            'cpu': cpu_model(), 'cores': os.cpu_count(), **trained_with(config, REPO)}
    _write_info(run_dir, info)
    evaluate(config, run_dir)
    _write_info(run_dir, {**info, 'total_s': time.time() - t0})


def trained(run_dir: str) -> dict | None:
    """The run's ``run_info.json`` if its training finished (an evaluation may not have)."""
    path = osp.join(run_dir, 'run_info.json')
    if not osp.isfile(path) or not osp.isfile(osp.join(run_dir, 'last_checkpoint')):
        return None
    with open(path) as f:
        info = json.load(f)
    return info if 'train_s' in info else None


def check_run_folder(run_dir: str, today: dict) -> None:
    """Refuse a run folder trained with another config, other pretrained files or another demo
    world than today's (``config_digest``, ``pretrained`` and ``worlds`` in its run info, against
    ``today``, a :func:`trained_with` dict): its checkpoint and metrics would be reported as today's."""
    path = osp.join(run_dir, 'run_info.json')
    if osp.isfile(path):
        with open(path) as f:
            info = json.load(f)
        if (why := stale_against(info, today)) is not None:
            raise SystemExit(f'ablate: {run_dir} was trained with {why}; move it away or remove it to train the '
                             'run again')


def finish_evaluation(config: str, run_dir: str, info: dict) -> None:
    """Evaluate a trained run whose evaluation did not finish (no ``metrics.json``)."""
    t0 = time.time()
    evaluate(config, run_dir)
    _write_info(run_dir, {**info, 'total_s': info['train_s'] + time.time() - t0})


def drop_evaluations(config: str, seed: int, run_dir: str) -> None:
    """The run's missing evaluations with one sensor dropped."""
    for drop in ('camera', 'lidar'):
        if not osp.isfile(osp.join(run_dir, f'metrics_drop-{drop}.json')):
            print(f'ablate: evaluating {run_name(config)} seed {seed} with the {drop} dropped', flush=True)
            evaluate(config, run_dir, drop)


def archive_run(config: str, seed: int, work_dir: str, archive: str, publish: bool) -> None:
    """Record the finished run (its folder under ``work_dir``) in the archive (inside docs/ only
    with ``--publish``: a trial may read the committed archive, not add to it)."""
    runs = collect([config], [seed], work_dir)
    for run in runs.get(run_name(config), []):
        refuse_docs_without_publish(archive, publish, 'ablate')
        write_record(run, record_path(archive, run_name(config), seed))


def main() -> None:
    args = parse_args()
    args.out = args.out or osp.join(args.work_dir, 'report.md')
    args.archive = args.archive or osp.join(osp.splitext(args.out)[0], 'runs')
    refuse_docs_without_publish(args.out, args.publish, 'ablate')
    for v in args.variants:
        if not osp.isfile(variant_path(v)):
            raise SystemExit(f'ablate: variant not found: {variant_path(v)} (names are files in {VARIANT_DIR}/)')
    if not osp.isfile(args.base):
        raise SystemExit(f'ablate: base config not found: {args.base}')
    for e in args.extra:
        if not osp.isfile(e):
            raise SystemExit(f'ablate: fragment not found: {e}')
    args.configs = compose(args.base, args.variants, args.work_dir, args.extra)
    today = {config: trained_with(config, REPO) for config in args.configs}
    if not args.report_only:
        fused = {config: not args.no_drop and is_fused(config) for config in args.configs}
        for seed in args.seeds:  # seed-major: a cut-short study still has whole seeds
            for config in args.configs:
                run_dir = osp.join(args.work_dir, run_name(config), f'seed{seed}')
                record = record_path(args.archive, run_name(config), seed)
                check_run_folder(run_dir, today[config])
                rec = read_record(record) if not osp.isdir(run_dir) and osp.isfile(record) else None
                why = rec and stale_against(rec['info'], today[config])
                if why:
                    print(f'ablate: {run_name(config)} seed {seed} in the archive ({record}) was trained with {why}: '
                          'training it again', flush=True)
                    rec = None
                if rec is not None:
                    missing = [s for s in ('camera', 'lidar') if fused[config] and s not in rec['drop']]
                    print(f'ablate: {run_name(config)} seed {seed} reused from the archive ({record})'
                          + (f'; its evaluation without {" and ".join(missing)} is missing and needs the run '
                             'folder' if missing else ''), flush=True)
                    continue
                if osp.isfile(osp.join(run_dir, 'metrics.json')):
                    print(f'ablate: {run_dir} done, reused', flush=True)
                elif (info := trained(run_dir)) is not None:
                    print(f'ablate: {run_dir} trained, its evaluation did not finish: evaluating', flush=True)
                    finish_evaluation(config, run_dir, info)
                else:
                    print(f'ablate: training {run_name(config)} seed {seed} -> {run_dir}', flush=True)
                    t0 = time.time()
                    run_one(config, seed, run_dir, args.cfg_options)
                    print(f'ablate: {run_name(config)} seed {seed} finished in {(time.time() - t0) / 60:.1f} min',
                          flush=True)
                if fused[config]:
                    drop_evaluations(config, seed, run_dir)
                archive_run(config, seed, args.work_dir, args.archive, args.publish)
    else:  # the runs finished here are recorded, whether or not this call trained them
        for seed in args.seeds:
            for config in args.configs:
                archive_run(config, seed, args.work_dir, args.archive, args.publish)
    runs = collect(args.configs, args.seeds, args.work_dir, args.archive, root=REPO, today=today)
    if not runs:
        raise SystemExit(f'ablate: no finished runs under {args.work_dir} or in {args.archive}')
    write_report(runs, args.out, args.configs, args.seeds, args.cfg_options, args.notes, args.base, args.extra)


if __name__ == '__main__':
    main()
