"""The ablation study's statistics and report (fuller/analysis/study.py)."""

import numpy as np
import pytest


def test_paired_difference_statistics():
    from fuller.analysis.study import comparison_lines, paired_difference

    # Every seed better by 2-4 points: the smallest p the 3 seeds allow (2/8), an interval above 0.
    res = paired_difference({0: 0.30, 1: 0.25, 2: 0.40}, {0: 0.27, 1: 0.23, 2: 0.36, 3: 0.5})
    assert res['n'] == 3 and res['mean'] == pytest.approx(0.03)
    assert res['p'] == pytest.approx(0.25) and 0.0199 <= res['ci95'][0] <= res['ci95'][1] <= 0.0401
    # Differences of both signs: p = 1 for a zero mean.
    assert paired_difference({0: 0.3, 1: 0.2}, {0: 0.2, 1: 0.3})['p'] == pytest.approx(1.0)
    assert paired_difference({0: 0.3}, {0: 0.2}) is None
    runs = {v: [{'seed': s, 'metrics': {'det/mAP': m + 0.01 * s, 'map/mIoU': m}} for s in range(3)]
            for v, m in (('fuller', 0.4), ('naive', 0.3))}
    rows, out = comparison_lines(runs)
    assert out['fuller-naive/mIoU']['mean'] == pytest.approx(0.1)
    # With inter-only present, FULLER is also compared with it: the intra calibration's own effect.
    runs['inter_only'] = [{'seed': s, 'metrics': {'det/mAP': 0.35, 'map/mIoU': 0.38}} for s in range(3)]
    _, out = comparison_lines(runs)
    assert out['fuller-inter_only/mIoU']['mean'] == pytest.approx(0.02)
    assert 'inter_only-naive/mAP' in out and 'naive-inter_only/mAP' not in out
    assert any(r.startswith('| fuller − naive | mAP | 3 | +10.0 |') for r in rows)
    # Runs composed with --with fragments compare within their fragments only.
    frag = {f'{v}+{x}': [{'seed': s, 'metrics': {'det/mAP': m, 'map/mIoU': m}} for s in range(2)]
            for v, x, m in (('fuller', 'sgd', 0.5), ('naive', 'sgd', 0.2), ('naive', 'demo-450it', 0.4))}
    _, out = comparison_lines(frag)
    assert set(out) == {'fuller+sgd-naive+sgd/mAP', 'fuller+sgd-naive+sgd/mIoU'}
    assert out['fuller+sgd-naive+sgd/mAP']['mean'] == pytest.approx(0.3)


def test_table_cells_show_a_spread_only_across_seeds():
    from fuller.analysis.study import fmt_cell as _fmt

    assert _fmt([0.415]) == '41.5'  # one seed: no "± 0.0" that reads as a measured spread
    assert _fmt([0.40, 0.42, None]) == '41.0 ± 1.4'
    assert _fmt([None]) == '–'


def test_conflict_stats_summarise_the_logged_gradient_diagnostics():
    from fuller.analysis.study import conflict_stats

    s = conflict_stats({'calib/cos': np.array([0.1, -0.2, np.nan, 0.3]),
                        'calib/grad_norm_det': np.array([0.02, 0.08, 0.05]),
                        'calib/grad_norm_map': np.array([0.002, 0.002, 0.0])})  # a zero norm is skipped
    assert s['cos_mean'] == pytest.approx(0.2 / 3) and s['conflict_frac'] == pytest.approx(1 / 3)
    assert s['det_map_norm_ratio'] == pytest.approx(20.0)  # geometric mean of 10 and 40
    assert 'cam_lidar_ratio_reaching' not in s and conflict_stats({}) == {}


def test_report_header_names_the_command_with_its_fragments(tmp_path):
    """A study composed with --with reports the command that reproduces it: the variants by their
    file names and the fragments after --with (not the '<variant>+<fragment>' run names)."""
    from fuller.analysis.study import write_report

    frag = 'configs/ablation/schedules/demo-450it.py'
    runs = {f'{v}+demo-450it': [{'seed': s, 'metrics': {'det/mAP': 0.3, 'map/mIoU': 0.4}, 'scalars': {}, 'info': {}}
                                for s in (0, 1)] for v in ('naive', 'fuller')}
    configs = [str(tmp_path / f'{v}+demo-450it.py') for v in ('naive', 'fuller')]
    out = tmp_path / 'study.md'
    write_report(runs, str(out), configs, [0, 1], [], extra=[frag])
    text = out.read_text()
    assert f'`python tools/ablate.py --variants naive fuller --with {frag} --seeds 0 1`' in text
    assert '| naive+demo-450it | 2 |' in text and '| fuller+demo-450it − naive+demo-450it | mAP | 2 |' in text


def test_reliance_table_reports_each_sensor_dropped(tmp_path):
    """Fused runs get both / -camera / -LiDAR cells per metric, single-modality runs their own
    numbers only; runs without drop evaluations are left out."""
    from fuller.analysis.study import reliance_lines

    def run(seed, m, drop=None):
        return {'seed': seed, 'metrics': {'det/mAP': m, 'det/NDS': m, 'map/mIoU': m}, 'scalars': {},
                'info': {}, 'drop': drop or {}}

    drop = {'camera': {'det/mAP': 0.4, 'det/NDS': 0.4, 'map/mIoU': 0.2},
            'lidar': {'det/mAP': 0.0, 'det/NDS': 0.1, 'map/mIoU': 0.1}}
    runs = {'naive': [run(0, 0.5, drop), run(1, 0.5, drop)], 'camera_only': [run(0, 0.2)], 'det_only': [run(0, 0.5)]}
    lines, out = reliance_lines(runs, list(runs))
    rows = [ln for ln in lines if ln.startswith('| naive') or ln.startswith('| camera_only')]
    assert rows[0] == '| naive | 2 | 50.0 ± 0.0 | 40.0 ± 0.0 | 0.0 ± 0.0 | 50.0 ± 0.0 | 40.0 ± 0.0 | 10.0 ± 0.0 | ' \
                      '50.0 ± 0.0 | 20.0 ± 0.0 | 10.0 ± 0.0 | – | – |'
    assert rows[1].startswith('| camera_only | 1 | 20.0 | – | – | 20.0 | – | – | 20.0 | – | – |')
    assert 'det_only' not in out and out['naive']['mIoU_drop_camera'] == [0.2, 0.2]
    header = next(ln for ln in lines if ln.startswith('| variant'))
    assert header.count('|') == next(ln for ln in lines if ln.startswith('|---')).count('|')


def test_tradeoff_figure_points_each_variant_and_each_sensor_dropped(tmp_path):
    """The mAP-against-mIoU figure: fused runs give their point and one per sensor dropped (in %),
    two-task single-modality runs their point, single-task runs a line; the report draws it."""
    from fuller.analysis.study import tradeoff_points, write_report

    def run(seed, m, drop=None, keys=('det/mAP', 'det/NDS', 'map/mIoU')):
        return {'seed': seed, 'metrics': {k: m for k in keys}, 'scalars': {}, 'info': {}, 'drop': drop or {}}

    drop = {'camera': {'det/mAP': 0.4, 'det/NDS': 0.4, 'map/mIoU': 0.2},
            'lidar': {'det/mAP': 0.0, 'det/NDS': 0.1, 'map/mIoU': 0.1}}
    runs = {'naive': [run(0, 0.5, drop), run(1, 0.6, drop)], 'camera_only': [run(0, 0.2)],
            'det_only': [run(0, 0.5, keys=('det/mAP', 'det/NDS'))], 'map_only': [run(0, 0.3, keys=('map/mIoU',))]}
    points, single = tradeoff_points(runs, list(runs))
    assert points['naive']['both'] == [(50.0, 50.0), (60.0, 60.0)]
    assert points['naive']['-camera'] == [(20.0, 40.0)] * 2 and points['naive']['-LiDAR'] == [(10.0, 0.0)] * 2
    assert set(points['camera_only']) == {'both'}
    assert single == {'det_only': ('mAP', [50.0]), 'map_only': ('mIoU', [30.0])}
    out = tmp_path / 'study.md'
    write_report(runs, str(out), [str(tmp_path / f'{n}.py') for n in runs], [0, 1], [])
    png = tmp_path / 'study' / 'task_tradeoff.png'
    assert png.stat().st_size > 10_000 and '![mAP against mIoU](study/task_tradeoff.png)' in out.read_text()


def test_sensor_conditions_are_checked_seed_by_seed():
    """The world's three conditions per seed, from the single-modality runs and the fused run
    with each sensor dropped; seeds without the drop evaluations are left out."""
    from fuller.analysis.study import modality_conditions

    def run(seed, det, seg, drop=None):
        return {'seed': seed, 'metrics': {'det/mAP': det, 'map/mIoU': seg}, 'drop': drop or {}}

    good = {'camera': {'det/mAP': 0.30, 'map/mIoU': 0.30}, 'lidar': {'det/mAP': 0.05, 'map/mIoU': 0.35}}
    bad = {'camera': {'det/mAP': 0.41, 'map/mIoU': 0.30}, 'lidar': {'det/mAP': 0.0, 'map/mIoU': 0.1}}
    runs = {'camera_only+x': [run(0, 0.05, 0.40), run(1, 0.05, 0.20), run(2, 0.1, 0.4)],
            'lidar_only+x': [run(0, 0.35, 0.30), run(1, 0.35, 0.30), run(2, 0.3, 0.3)],
            'naive+x': [run(0, 0.40, 0.45, good), run(1, 0.40, 0.45, bad), run(2, 0.4, 0.4)]}
    lines = modality_conditions(runs)
    assert 'seeds 0, 1' in lines[1]
    rows = {ln.split(' | ')[0][2:]: ln.split(' | ')[1:] for ln in lines if ln.startswith('| ') and 'seed 0' not in ln}
    assert rows['1. camera-only mIoU > LiDAR-only mIoU'] == ['yes', '**no** |']
    assert rows['2. fused mIoU > better single-modality mIoU'] == ['yes', 'yes |']
    assert rows['3. dropping the camera costs both tasks'] == ['yes', '**no** |']
    assert rows['3. dropping LiDAR costs both tasks'] == ['yes', 'yes |']
    assert not any('map alone' in ln for ln in lines)  # no single-task map runs: no row
    assert modality_conditions({'naive': runs['naive+x']}) == []
    # The single-task map models (BEVFusion's map table): their own row, '–' for a seed without both.
    runs['camera_map_only+x'] = [run(0, 0.0, 0.30), run(1, 0.0, 0.25)]
    runs['lidar_map_only+x'] = [run(0, 0.0, 0.20)]
    rows = {ln.split(' | ')[0][2:]: ln.split(' | ')[1:] for ln in modality_conditions(runs)
            if ln.startswith('| ') and 'seed 0' not in ln}
    assert rows["1. map alone (BEVFusion's setting): camera map-only mIoU > LiDAR map-only mIoU"] == ['yes', '– |']
    runs['lidar_map_only+x'].append(run(1, 0.0, 0.26))
    rows = {ln.split(' | ')[0][2:]: ln.split(' | ')[1:] for ln in modality_conditions(runs)
            if ln.startswith('| ') and 'seed 0' not in ln}
    assert rows["1. map alone (BEVFusion's setting): camera map-only mIoU > LiDAR map-only mIoU"] == ['yes', '**no** |']


def test_archive_records_stand_for_runs_whose_folders_are_gone(tmp_path):
    """A run archived with write_record is collected from the archive when its folder is absent:
    the same metrics, sensor-dropped metrics, info and gradient diagnostics, and the plotted
    curves to 4 significant digits; a folder, when present, takes precedence."""
    import json

    import numpy as np

    from fuller.analysis.study import collect, conflict_stats, record_path, write_record

    scalars = {'det.loss_heatmap': np.linspace(3, 1, 50), 'map.loss_focal': np.linspace(1, 0.2, 50),
               'calib/cos': np.sin(np.arange(50.0)), 'calib/grad_norm_det': np.full(50, 2.0),
               'calib/grad_norm_map': np.full(50, 0.5), 'calib/cam_lidar_ratio_after': np.full(50, 0.3),
               'lr': np.full(50, 1e-3)}
    run = {'seed': 1, 'metrics': {'det/mAP': 0.25, 'map/mIoU': 0.3}, 'scalars': scalars,
           'stats': conflict_stats(scalars), 'info': {'train_s': 60.0},
           'drop': {'camera': {'det/mAP': 0.2, 'map/mIoU': 0.1}}}
    archive = tmp_path / 'runs'
    (tmp_path / 'naive+demo-450it.py').write_text('model = dict(type="FullerNet")\n')
    write_record(run, record_path(str(archive), 'naive+demo-450it', 1))
    got = collect([str(tmp_path / 'naive+demo-450it.py')], [0, 1], str(tmp_path / 'work'), str(archive))
    (rec,) = got['naive+demo-450it']
    assert rec['archived'] and rec['seed'] == 1
    assert (rec['metrics'], rec['drop'], rec['info'], rec['stats']) == (run['metrics'], run['drop'], run['info'],
                                                                         run['stats'])
    assert set(rec['scalars']) == {'det.loss_heatmap', 'map.loss_focal', 'calib/cos', 'calib/cam_lidar_ratio_after'}
    np.testing.assert_allclose(rec['scalars']['calib/cos'], scalars['calib/cos'], rtol=1e-3, atol=1e-4)
    # a run folder (with its metrics) is preferred to the record
    folder = tmp_path / 'work' / 'naive+demo-450it' / 'seed1'
    folder.mkdir(parents=True)
    (folder / 'metrics.json').write_text(json.dumps({'metrics': {'det/mAP': 0.5}}))
    fresh = collect([str(tmp_path / 'naive+demo-450it.py')], [1], str(tmp_path / 'work'), str(archive))
    assert fresh['naive+demo-450it'][0]['metrics'] == {'det/mAP': 0.5} and 'archived' not in fresh['naive+demo-450it'][0]


def test_archived_runs_of_another_config_are_not_reused(tmp_path):
    """A record carries the digest of the config it was trained with: a changed config (a value,
    not a comment) makes it stale, so collect leaves it out (it is trained again); records
    without a digest (older ones) stand."""
    from fuller.analysis.study import collect, config_digest, is_stale, record_path, write_record

    config = tmp_path / 'naive+demo-450it.py'
    config.write_text('model = dict(type="FullerNet", width=64)\n')
    digest = config_digest(str(config))
    config.write_text('# a comment changes nothing\nmodel = dict(width=64, type="FullerNet")\n')
    assert config_digest(str(config)) == digest and len(digest) == 16
    archive = str(tmp_path / 'runs')
    base = {'metrics': {'det/mAP': 0.25}, 'scalars': {}, 'stats': {}, 'drop': {}}
    write_record({**base, 'seed': 0, 'info': {'config_digest': digest}}, record_path(archive, 'naive+demo-450it', 0))
    write_record({**base, 'seed': 1, 'info': {}}, record_path(archive, 'naive+demo-450it', 1))
    got = collect([str(config)], [0, 1], str(tmp_path / 'work'), archive)
    assert [r['seed'] for r in got['naive+demo-450it']] == [0, 1]
    config.write_text('model = dict(type="FullerNet", width=32)\n')
    assert is_stale({'config_digest': digest}, config_digest(str(config))) and not is_stale({}, 'x')
    got = collect([str(config)], [0, 1], str(tmp_path / 'work'), archive)
    assert [r['seed'] for r in got['naive+demo-450it']] == [1]


def test_archived_runs_of_other_pretrained_weights_are_not_reused(tmp_path):
    """The same config starting from a pretraining file made again differently: the record's
    hash of the file differs from today's, so the run is stale; a file absent here (the record
    cannot be checked) or a record without hashes stands."""
    from fuller.analysis.study import (
        collect,
        config_digest,
        pretrained_digests,
        record_path,
        stale_against,
        stale_reason,
        trained_with,
        write_record,
    )

    weights = tmp_path / 'pretrained' / 'cam.pth'
    weights.parent.mkdir()
    weights.write_bytes(b'first pretraining')
    config = tmp_path / 'camera_only+init.py'
    config.write_text("model = dict(type='FullerNet', encoders=dict(camera=dict(backbone=dict(\n"
                      "    init_cfg=dict(type='Pretrained', checkpoint='pretrained/cam.pth')))))\n")
    digest, first = config_digest(str(config)), pretrained_digests(str(config), str(tmp_path))
    assert list(first) == ['pretrained/cam.pth'] and len(first['pretrained/cam.pth']) == 16
    archive = str(tmp_path / 'runs')
    base = {'metrics': {'map/mIoU': 0.2}, 'scalars': {}, 'stats': {}, 'drop': {}}
    write_record({**base, 'seed': 0, 'info': {'config_digest': digest, 'pretrained': first}},
                 record_path(archive, 'camera_only+init', 0))
    write_record({**base, 'seed': 1, 'info': {'config_digest': digest}}, record_path(archive, 'camera_only+init', 1))
    work = str(tmp_path / 'work')
    assert [r['seed'] for r in collect([str(config)], [0, 1], work, archive, root=str(tmp_path))['camera_only+init']] \
        == [0, 1]
    weights.write_bytes(b'second pretraining, other settings')
    today = pretrained_digests(str(config), str(tmp_path))
    why = stale_reason({'config_digest': digest, 'pretrained': first}, digest, today)
    assert why is not None and 'pretrained/cam.pth' in why and first['pretrained/cam.pth'] in why
    assert [r['seed'] for r in collect([str(config)], [0, 1], work, archive, root=str(tmp_path))['camera_only+init']] \
        == [1]
    # What ablate records and compares: the three at once, from one reading of the config.
    now = trained_with(str(config), str(tmp_path))
    assert now == {'config_digest': digest, 'pretrained': today, 'worlds': {}}
    assert stale_against({'config_digest': digest, 'pretrained': first}, now) == why
    stale_today = {str(config): {**now, 'pretrained': first}}  # a caller's own reading is used as given
    assert len(collect([str(config)], [0, 1], work, archive, root=str(tmp_path), today=stale_today)[
        'camera_only+init']) == 2
    weights.unlink()  # absent here: nothing to compare, the record stands
    assert pretrained_digests(str(config), str(tmp_path)) == {}
    assert len(collect([str(config)], [0, 1], work, archive, root=str(tmp_path))['camera_only+init']) == 2
