"""Bad input reaching the command-line tools: each ends in a message naming the file or key,
before training starts."""

import os
import os.path as osp
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fuller.testing import REPO_ROOT, tiny_config


def _run(tool: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', tool), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)


@pytest.fixture(scope='module')
def cfg_path(demo_root, tmp_path_factory):
    d = tmp_path_factory.mktemp('badinput')
    cfg = tiny_config(demo_root, str(d / 'work'))
    path = d / 'tiny.py'
    cfg.dump(str(path))
    return path


def test_misspelt_top_level_cfg_option_is_refused(cfg_path):
    proc = _run('train.py', cfg_path, '--cfg-options', 'trian_cfg.max_iters=2')
    assert proc.returncode != 0
    assert "has no top-level key 'trian_cfg'; did you mean 'train_cfg'" in proc.stderr
    assert 'Iter(train)' not in proc.stdout  # refused before training


def test_float16_amp_on_cpu_is_refused_with_the_reason(cfg_path, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip('the refusal is for CPU runs')
    proc = _run('train.py', cfg_path, '--work-dir', tmp_path / 'w', '--amp', '--amp-dtype', 'float16')
    assert proc.returncode != 0 and 'float16 on CPU is refused' in proc.stderr and 'bfloat16' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'w').exists()  # before anything is built


def test_unknown_model_type_names_the_config_key(cfg_path, tmp_path):
    text = cfg_path.read_text().replace("type='mmdet.ResNet'", "type='mmdet.ResNett'")
    assert 'ResNett' in text
    bad = tmp_path / 'bad_type.py'
    bad.write_text(text)
    proc = _run('train.py', bad, '--work-dir', tmp_path / 'w')
    assert proc.returncode != 0
    assert "model.encoders.camera.backbone.type = 'mmdet.ResNett'" in proc.stderr, proc.stderr[-2000:]


def test_unknown_inter_rule_lists_fullers_rules_too(cfg_path, tmp_path):
    proc = _run('train.py', cfg_path, '--work-dir', tmp_path / 'w', '--cfg-options',
                "optim_wrapper.type=CalibratedOptimWrapper", "optim_wrapper.inter.type=Fuller")
    assert proc.returncode != 0
    assert "optim_wrapper.inter.type='Fuller' is not a rule" in proc.stderr
    assert "'FullerInter', 'Mean', 'Sum'" in proc.stderr and 'UPGrad' in proc.stderr
    # One line, not a 30-line traceback ending in it.
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("train: optim_wrapper.inter.type='Fuller' is not a rule")


def test_a_config_conflict_is_one_line_and_its_traceback_behind_fuller_debug(cfg_path, tmp_path):
    import os

    args = ('train.py', cfg_path, '--work-dir', tmp_path / 'w', '--cfg-options',
            'model.encoders.lidar.voxelize.voxel_size=[0.4,0.4,0.5]')
    proc = _run(*args)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('train: model.encoders.lidar.voxelize.voxel_size = [0.4, 0.4, 0.5] but the geometry gives')
    assert last.endswith('(FULLER_DEBUG=1 shows the traceback)') and 'class `' not in last
    env = {**os.environ, 'FULLER_DEBUG': '1'}
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', args[0]), *map(str, args[1:])],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, env=env)
    assert proc.returncode != 0 and 'Traceback' in proc.stderr and 'but the geometry gives' in proc.stderr


def test_corrupt_info_file_names_the_file(demo_root, tmp_path):
    from mmengine.registry import init_default_scope

    from fuller.registry import DATASETS

    init_default_scope('fuller')
    data = (tmp_path / 'infos.pkl')
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        data.write_bytes(f.read()[:300])  # cut short
    with pytest.raises(ValueError, match=r'corrupt info file .*infos.pkl.*regenerate'):
        DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(data), pipeline=[]))
    text = tmp_path / 'text.pkl'
    text.write_text('not a pickle at all \u00e9')
    with pytest.raises(ValueError, match=r'corrupt info file .*text.pkl'):
        DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(text), pipeline=[]))
    other = tmp_path / 'other.pkl'
    with open(other, 'wb') as f:
        pickle.dump({'infos': []}, f)
    with pytest.raises(ValueError, match=r'other.pkl is not a FULLER/mmdet3d info file'):
        DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(other), pipeline=[]))


def test_truncated_images_are_errors_naming_the_file(tmp_path):
    from fuller.datasets.transforms import DataFileError
    from fuller.datasets.transforms.loading import load_image_file

    img = (np.random.rand(48, 64, 3) * 255).astype(np.uint8)
    for ext in ('jpg', 'png'):
        good = tmp_path / f'good.{ext}'
        cv2.imwrite(str(good), img)
        assert load_image_file(str(good)).shape == (48, 64, 3)
        cut = tmp_path / f'cut.{ext}'
        cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
        with pytest.raises(DataFileError, match=rf'corrupt image .*cut.{ext}: truncated'):
            load_image_file(str(cut))
    (tmp_path / 'empty.jpg').write_bytes(b'')
    with pytest.raises(DataFileError, match='empty.jpg: empty file'):
        load_image_file(str(tmp_path / 'empty.jpg'))


def test_truncated_image_in_training_is_an_error_or_a_counted_skip(demo_root, tmp_path):
    from mmengine.registry import init_default_scope

    from fuller.datasets.transforms import DataFileError
    from fuller.registry import DATASETS

    init_default_scope('fuller')
    with open(osp.join(demo_root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        data = pickle.load(f)
    cam = data['data_list'][0]['images']['CAM_FRONT']
    src = osp.join(demo_root, 'samples', 'CAM_FRONT', cam['img_path'])
    cut = tmp_path / 'cut_front.jpg'
    with open(src, 'rb') as f:
        cut.write_bytes(f.read()[:2000])
    cam['img_path'] = str(cut)
    ann = tmp_path / 'infos.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(data, f)
    base = dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(ann),
                pipeline=[dict(type='LoadMultiViewImages'), dict(type='PackMultiTaskInputs')], filter_empty_gt=False)
    with pytest.raises(DataFileError, match='cut_front.jpg: truncated JPEG'):
        DATASETS.build(base)[0]
    ds = DATASETS.build(dict(base, on_bad_sample='skip'))
    ds[0]
    assert len(ds.bad_samples) == 1 and 'cut_front.jpg' in ds.bad_samples[0]


def test_truncated_point_cloud_reports_its_true_size(tmp_path):
    from fuller.datasets.transforms import DataFileError
    from fuller.datasets.transforms.loading import load_points_file

    path = tmp_path / 'cut.pcd.bin'
    path.write_bytes(np.zeros(5 * 10, np.float32).tobytes() + b'\x00\x00\x00\x00\x00\x00')  # 206 bytes
    with pytest.raises(DataFileError, match=r'cut.pcd.bin: 206 bytes is not a whole number of 5-float32 records'):
        load_points_file(str(path), 5)


def test_an_empty_scan_is_refused_as_empty(tmp_path):
    from fuller.datasets.transforms import DataFileError
    from fuller.datasets.transforms.loading import load_points_file

    path = tmp_path / 'empty.pcd.bin'
    path.write_bytes(b'')
    with pytest.raises(DataFileError, match=r'empty point cloud .*empty.pcd.bin: the file has 0 bytes.*no points'):
        load_points_file(str(path), 5)


def test_a_trailing_slash_is_not_another_data_root():
    from fuller.datasets.nuscenes_mtl import fill_pipeline

    step = [dict(type='LoadBEVMapMask', dataroot='/data/nuscenes')]
    out = fill_pipeline(step, {'data_root': '/data/nuscenes/'})
    assert out[0]['dataroot'] == '/data/nuscenes/'
    fill_pipeline([dict(type='LoadBEVMapMask', dataroot='/data/../data/nuscenes')], {'data_root': '/data/nuscenes'})
    with pytest.raises(ValueError, match=r'dataroot = .*/data/other.* but the data_root is'):
        fill_pipeline([dict(type='LoadBEVMapMask', dataroot='/data/other')], {'data_root': '/data/nuscenes'})


def test_info_without_location_asks_to_regenerate_it(demo_root, tmp_path):
    from mmengine.registry import init_default_scope

    from fuller.registry import DATASETS

    init_default_scope('fuller')
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        data = pickle.load(f)
    for info in data['data_list']:
        info.pop('location', None)
    ann = tmp_path / 'no_location.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(data, f)
    ds = DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(ann), test_mode=True,
                             pipeline=[dict(type='LoadBEVMapMask', dataroot=demo_root)]))
    with pytest.raises(KeyError, match='info has no "location"; regenerate the info file'):
        ds[0]


def test_create_data_checks_the_out_dir_before_computing(demo_root, tmp_path):
    proc = _run('create_data.py', 'nuscenes', '--root-path', demo_root, '--version', 'v1.0-mini', '--out-dir',
                tmp_path / 'nope', timeout=120)
    assert proc.returncode != 0 and f'--out-dir {tmp_path / "nope"} does not exist' in proc.stderr
    assert 'infos' not in proc.stderr  # refused before any info was computed (no progress bar)


def test_cfg_options_keep_spaces_in_a_value_and_refuse_them_in_a_list(capsys):
    """mmengine's DictAction deletes every space: work_dir='/data/my runs/x' became '/data/myruns/x'."""
    import argparse

    from fuller.utils.cli import ConfigOptionsAction

    p = argparse.ArgumentParser(prog='train')
    p.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction)
    args = p.parse_args(['--cfg-options', 'work_dir=/data/my runs/x', 'a.n=3', 'a.f=0.5', 'a.b=false',
                         "a.l=[1, 2, (3, 4)]", 'a.s="quoted value"', 'a.none=None'])
    assert args.cfg_options == {'work_dir': '/data/my runs/x', 'a.n': 3, 'a.f': 0.5, 'a.b': False,
                                'a.l': [1, 2, (3, 4)], 'a.s': 'quoted value', 'a.none': None}
    for bad, why in (("a.l=[my file, b]", 'a list or tuple element with a space is not supported'),
                     ('justakey', "'justakey' is not key=value")):
        with pytest.raises(SystemExit):
            p.parse_args(['--cfg-options', bad])
        assert why in capsys.readouterr().err


def test_missing_devkit_tables_stop_the_test_before_the_test_pass(demo_root, tmp_path):
    """Missing devkit tables were reported only after the whole test pass (82 s on the demo, the
    full val set on nuScenes): now when the metric is built, before the first sample."""
    import torch
    from mmengine.registry import init_default_scope

    from fuller.registry import MODELS

    cfg = tiny_config(demo_root, str(tmp_path / 'work'))
    empty = tmp_path / 'no_tables'
    empty.mkdir()
    for ev in cfg.test_evaluator:
        if ev['type'] == 'NuScenesDetMetric':
            ev['data_root'] = str(empty)
    init_default_scope('fuller')
    ckpt = tmp_path / 'init.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, ckpt)
    path = tmp_path / 'cfg.py'
    cfg.dump(str(path))
    proc = _run('test.py', path, ckpt)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert f"no v1.0-mini/ tables under data_root='{empty}'" in proc.stderr.strip().splitlines()[-1]
    assert 'Epoch(test)' not in proc.stdout + proc.stderr  # no sample was run


def test_missing_map_and_data_files_stop_the_dataset_before_any_sample(demo_root, tmp_path):
    """The dataset checks, when built, the map-expansion file of every location in its split and
    the files of its first samples: a wrong root or a missing download is one error with the path,
    before the first forward pass. With on_bad_sample='skip' one missing file is tolerated."""
    from mmengine.registry import init_default_scope

    from fuller.registry import DATASETS

    init_default_scope('fuller')
    root = tmp_path / 'root'
    (root / 'maps' / 'expansion').mkdir(parents=True)
    for d in ('samples', 'sweeps'):
        os.symlink(osp.join(demo_root, d), root / d)
    maps = sorted(os.listdir(osp.join(demo_root, 'maps', 'expansion')))
    for name in maps[1:]:  # one location's map left out
        os.symlink(osp.join(demo_root, 'maps', 'expansion', name), root / 'maps' / 'expansion' / name)
    ann = osp.join(demo_root, 'nuscenes_infos_train.pkl')
    pipeline = [dict(type='LoadBEVMapMask'), dict(type='PackMultiTaskInputs')]
    base = dict(type='NuScenesMultiTaskDataset', data_root=str(root) + '/', ann_file=ann, pipeline=pipeline,
                filter_empty_gt=False, geometry=dict(map_bound=dict(xbound=(-50.0, 50.0, 0.5),
                                                                    ybound=(-50.0, 50.0, 0.5))))
    with pytest.raises(FileNotFoundError, match=f'map expansion file not found: .*{maps[0]} .*nuscenes_infos_train.pkl'):
        DATASETS.build(base)
    os.symlink(osp.join(demo_root, 'maps', 'expansion', maps[0]), root / 'maps' / 'expansion' / maps[0])
    assert len(DATASETS.build(base)) > 0

    with open(ann, 'rb') as f:
        data = pickle.load(f)
    data['data_list'][1]['lidar_points']['lidar_path'] = 'not_there.pcd.bin'
    bad = tmp_path / 'infos.pkl'
    with open(bad, 'wb') as f:
        pickle.dump(data, f)
    points = dict(base, ann_file=str(bad), pipeline=[dict(type='PackMultiTaskInputs')])
    with pytest.raises(FileNotFoundError, match=r'data file not found: .*not_there.pcd.bin \(sample 1 of .*infos.pkl; '
                                                r'is data_root'):
        DATASETS.build(points)
    assert len(DATASETS.build(dict(points, on_bad_sample='skip'))) == len(data['data_list'])
    assert len(DATASETS.build(dict(points, check_files=0))) == len(data['data_list'])
