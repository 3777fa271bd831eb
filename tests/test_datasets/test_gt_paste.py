"""The GT database (tools/create_data.py) and GT-paste (ObjectPaste), against what BEVFusion and
mmdet3d do: mit-han-lab/bevfusion tools/data_converter/create_gt_database.py (the database),
mmdet3d/datasets/pipelines/dbsampler.py and transforms_3d.py ObjectPaste (the draw, the
collision rule, the point replacement)."""

import os.path as osp
import pickle

import numpy as np
import pytest
from mmdet3d.datasets.transforms.data_augment_utils import box_collision_test
from mmdet3d.structures import LiDARInstance3DBoxes, LiDARPoints
from mmdet3d.structures.ops import box_np_ops
from mmengine.registry import DefaultScope

from fuller.datasets import NuScenesMultiTaskDataset
from fuller.datasets.box_ops import boxes_overlap_bev, points_in_boxes
from fuller.datasets.info_io import load_info_file
from fuller.datasets.metainfo import CLASSES
from fuller.datasets.transforms import ObjectPaste
from fuller.datasets.transforms.loading import DataFileError
from fuller.datasets.transforms.object_paste import DB_INFO_KEYS

# BEVFusion's db_sampler (configs/nuscenes/default.yaml, ObjectPaste.db_sampler)
SAMPLE_GROUPS = dict(car=2, truck=3, construction_vehicle=7, bus=4, trailer=6, barrier=2, motorcycle=6, bicycle=6,
                     pedestrian=2, traffic_cone=2)


def _random_boxes(rng, n):
    return np.c_[rng.uniform(-10, 10, (n, 3)), rng.uniform(0.5, 5, (n, 3)), rng.uniform(-np.pi, np.pi, n)]


def test_box_geometry_equals_mmdet3ds():
    """points_in_boxes = mmdet3d's box_np_ops.points_in_rbbox (bottom-centre boxes); boxes_overlap_bev
    = the collision test of its DataBaseSampler (box_collision_test on center_to_corner_box2d)."""
    rng = np.random.default_rng(0)
    boxes = _random_boxes(rng, 40)
    pts = rng.uniform(-12, 12, (4000, 4))
    inside = points_in_boxes(pts, boxes)
    assert inside.any() and np.array_equal(inside, box_np_ops.points_in_rbbox(pts, boxes))
    bev = box_np_ops.center_to_corner_box2d(boxes[:, 0:2], boxes[:, 3:5], boxes[:, 6])
    ref = box_collision_test(bev, bev)
    np.fill_diagonal(ref, True)
    mine = boxes_overlap_bev(boxes, boxes)
    assert 40 < mine.sum() < 40 * 40 and np.array_equal(mine, ref)
    assert np.array_equal(boxes_overlap_bev(boxes[:7], boxes[7:]), ref[:7, 7:])


def _dataset(root, pipeline, valid=True):
    with DefaultScope.overwrite_default_scope('fuller'):
        return NuScenesMultiTaskDataset(data_root=root, ann_file='nuscenes_infos_train.pkl', check_files=0,
                                        use_valid_flag=valid, modality=dict(use_lidar=True, use_camera=False),
                                        pipeline=pipeline)


LOAD = [dict(type='LoadMultiSweepPoints', sweeps=1), dict(type='LoadAnnotations3D', with_bbox_3d=True,
                                                          with_label_3d=True)]


def test_database_holds_each_boxs_points(demo_root):
    """Every kept box of the train split has an entry (BEVFusion's keys) whose file holds exactly the
    scan's points inside the box, relative to its bottom centre; read with the safe unpickler."""
    db = load_info_file(osp.join(demo_root, 'nuscenes_dbinfos_train.pkl'))
    assert set(db) == set(CLASSES)
    ds = _dataset(demo_root, LOAD)
    by_sample = {}
    for entries in db.values():
        for e in entries:
            assert tuple(e) == DB_INFO_KEYS
            by_sample.setdefault(e['image_idx'], []).append(e)
    assert len(by_sample) == len(ds)
    for j in (0, len(ds) - 1):
        r = ds.pipeline(ds.get_data_info(j))
        boxes, labels = r['gt_bboxes_3d'].tensor.numpy(), r['gt_labels_3d']
        entries = sorted(by_sample[r['token']], key=lambda e: e['gt_idx'])
        assert [e['gt_idx'] for e in entries] == [i for i in range(len(boxes)) if labels[i] >= 0]
        inside = points_in_boxes(r['points'].tensor.numpy(), boxes)
        for e in entries:
            i = e['gt_idx']
            assert e['name'] == CLASSES[labels[i]] and e['difficulty'] == 0
            np.testing.assert_allclose(e['box3d_lidar'], boxes[i], rtol=0, atol=1e-5)
            pts = np.fromfile(osp.join(demo_root, e['path']), np.float32).reshape(-1, 5)
            assert len(pts) == e['num_points_in_gt'] == inside[:, i].sum()
            np.testing.assert_allclose(pts[:, :3] + boxes[i, :3], r['points'].tensor.numpy()[inside[:, i], :3],
                                       atol=1e-4)
    assert sum(len(v) for v in db.values()) > 0 and sum(e['num_points_in_gt'] > 0 for v in db.values() for e in v)


def _write_db(tmp_path, boxes, names, points_per_object=6):
    """A database of boxes of the given names, each with points_per_object points inside."""
    rng = np.random.default_rng(1)
    db = {}
    (tmp_path / 'db').mkdir()
    for i, (box, name) in enumerate(zip(boxes, names)):
        local = np.c_[rng.uniform(-0.2, 0.2, (points_per_object, 2)) * box[3:5], rng.uniform(0.1, 0.9, points_per_object)
                      * box[5], np.full(points_per_object, 7.0), np.zeros(points_per_object)].astype(np.float32)
        rel = f'db/{i}_{name}.bin'
        local.tofile(str(tmp_path / rel))
        db.setdefault(name, []).append(dict(name=name, path=rel, image_idx='t', gt_idx=i,
                                            box3d_lidar=np.r_[box, 0.0, 0.0].astype(np.float32),
                                            num_points_in_gt=points_per_object, difficulty=0, group_id=i))
    with open(tmp_path / 'dbinfos.pkl', 'wb') as f:
        pickle.dump(db, f)


def _paste(tmp_path, groups, **kw):
    return ObjectPaste(db_sampler=dict(info_path='dbinfos.pkl', rate=kw.pop('rate', 1.0), sample_groups=groups,
                                       prepare=kw.pop('prepare', dict(filter_by_difficulty=[-1])),
                                       points_loader=dict(load_dim=5, use_dim=5)),
                       data_root=str(tmp_path), classes=CLASSES, **kw)


def _sample(boxes, labels, n_points=2000, seed=2):
    rng = np.random.default_rng(seed)
    pts = np.c_[rng.uniform(-20, 20, (n_points, 2)), rng.uniform(0, 2, n_points), np.ones(n_points),
                np.zeros(n_points)].astype(np.float32)
    return dict(points=LiDARPoints(pts, points_dim=5), gt_labels_3d=np.asarray(labels, np.int64),
                gt_bboxes_3d=LiDARInstance3DBoxes(np.c_[boxes, np.zeros((len(boxes), 2))], box_dim=9))


def test_paste_tops_up_without_collisions_and_replaces_the_points(tmp_path):
    car = CLASSES.index('car')
    # database: 4 cars far apart, the first on top of the sample's own car
    db_boxes = np.array([[0, 0, 0, 4, 2, 1.5, 0.3], [8, 8, 0, 4, 2, 1.5, 0.0], [-8, 8, 0, 4, 2, 1.5, 1.0],
                         [8, -8, 0, 4, 2, 1.5, 2.0]])
    _write_db(tmp_path, db_boxes, ['car'] * 4)
    gt = np.array([[0.5, 0.0, 0.0, 4, 2, 1.5, 0.0]])
    op = _paste(tmp_path, dict(car=4))
    op._draws['car'].order = np.arange(4)  # draw the first three, the colliding one among them
    r = op(_sample(gt, [car]))
    boxes, labels = r['gt_bboxes_3d'].tensor.numpy(), r['gt_labels_3d']
    # topped up to 4 - 1 = 3 draws; the one on the sample's car is dropped
    assert len(boxes) == 3 and list(labels) == [car] * 3
    assert not boxes_overlap_bev(boxes[:, :7], boxes[:, :7])[~np.eye(3, dtype=bool)].any()
    new = boxes[1:, :7]
    inside = points_in_boxes(r['points'].tensor.numpy(), new)
    # inside a pasted box: exactly the object's 6 points (intensity 7), the scan's removed
    assert list(inside.sum(0)) == [6, 6]
    assert np.all(r['points'].tensor.numpy()[inside.any(1), 3] == 7.0)
    # a sample that already has its 4 cars gets nothing
    full = _sample(np.array([[30.0 + 5 * k, 0, 0, 4, 2, 1.5, 0] for k in range(4)]), [car] * 4)
    n = len(full['points'].tensor)
    assert len(op(full)['gt_labels_3d']) == 4 and len(full['points'].tensor) == n


def test_candidates_that_collide_with_each_other_keep_the_later_one(tmp_path):
    """BEVFusion's sample_class_v2: a candidate overlapping a later one is dropped first (its row and
    column then cleared), so the later one is kept."""
    _write_db(tmp_path, np.array([[0, 0, 0, 4, 2, 1.5, 0], [1, 0, 0, 4, 2, 1.5, 0]]), ['bus', 'bus'])
    op = _paste(tmp_path, dict(bus=2))
    np.random.seed(0)
    op._draws['bus'].order = np.array([0, 1])
    chosen = op.sample(np.zeros((0, 9)), np.zeros(0, np.int64))
    assert [c['gt_idx'] for c in chosen] == [1]


def test_draws_cycle_through_a_class_and_filters_apply(tmp_path):
    boxes = np.array([[10.0 * k, 0, 0, 1, 1, 1, 0] for k in range(5)])
    _write_db(tmp_path, boxes, ['pedestrian'] * 5)
    with open(tmp_path / 'dbinfos.pkl', 'rb') as f:
        db = pickle.load(f)
    db['pedestrian'][0]['num_points_in_gt'] = 2  # below the min-points filter
    db['pedestrian'][1]['difficulty'] = -1  # a removed difficulty
    with open(tmp_path / 'dbinfos.pkl', 'wb') as f:
        pickle.dump(db, f)
    op = _paste(tmp_path, dict(pedestrian=2), prepare=dict(filter_by_difficulty=[-1],
                                                           filter_by_min_points=dict(pedestrian=5)))
    assert [e['gt_idx'] for e in op.db['pedestrian']] == [2, 3, 4]
    draws = op._draws['pedestrian']
    got = [sorted(e['gt_idx'] for e in draws.draw(2)) for _ in range(3)]
    # a pass of 3 entries: 2, then the 1 left (BatchSampler._sample), then a new shuffled pass
    assert [len(g) for g in got] == [2, 1, 2] and sorted(got[0] + got[1]) == [2, 3, 4]
    # rate halves the top-up: round(0.5 * 2) = 1 pedestrian
    op_half = _paste(tmp_path, dict(pedestrian=2), rate=0.5)
    assert len(op_half.sample(np.zeros((0, 9)), np.zeros(0, np.int64))) == 1


def test_stop_epoch_and_bad_databases(tmp_path):
    _write_db(tmp_path, np.array([[5.0, 5, 0, 4, 2, 1.5, 0]]), ['car'])
    op = _paste(tmp_path, dict(car=1), stop_epoch=2)
    assert op.active and not op.set_epoch(1) and op.set_epoch(2) and not op.active
    s = _sample(np.zeros((0, 7)), [])
    assert len(op(s)['gt_labels_3d']) == 0  # epoch 2 >= stop_epoch: no paste
    assert not _paste(tmp_path, dict(car=1), stop_epoch=-1).active  # BEVFusion's camera stages: never
    with pytest.raises(KeyError, match='sample_groups'):
        _paste(tmp_path, dict(lorry=1))
    with pytest.raises(FileNotFoundError, match='tools/create_data.py'):
        ObjectPaste(db_sampler=dict(info_path='nope.pkl', sample_groups=dict(car=1)), data_root=str(tmp_path),
                    classes=CLASSES)
    (tmp_path / 'db' / '0_car.bin').unlink()
    with pytest.raises(DataFileError, match='0_car.bin'):
        _paste(tmp_path, dict(car=1))(_sample(np.zeros((0, 7)), []))


@pytest.mark.slow
def test_paste_stops_at_its_epoch_in_persistent_workers(demo_root, tmp_path):
    """In a run with a persistent data worker, the batches of the first pass over the data carry
    pasted cars and those after stop_epoch (1, in passes of an iteration-based loop) do not:
    PipelineEpochHook restarts the worker with the switched pipeline."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from fuller.engine import base_dataset
    from fuller.testing import tiny_config

    cfg = tiny_config(demo_root, str(tmp_path))
    ds = base_dataset(cfg.train_dataloader.dataset)
    pos = next(i for i, t in enumerate(ds.pipeline) if t['type'] == 'LoadAnnotations3D') + 1
    ds.pipeline.insert(pos, dict(type='ObjectPaste', stop_epoch=1, db_sampler=dict(
        info_path='nuscenes_dbinfos_train.pkl', sample_groups=dict(car=60), points_loader=dict(load_dim=5, use_dim=5))))
    cfg.train_dataloader.update(num_workers=1, persistent_workers=True, batch_size=8)
    plain = _dataset(demo_root, LOAD, valid=False)  # every box, valid or not: an upper bound
    real = max(int((plain.pipeline(plain.get_data_info(j))['gt_labels_3d'] == 0).sum()) for j in range(len(plain)))
    n_pass = len(plain) // 8
    cfg.train_cfg.max_iters = 2 * n_pass + 1
    cars = []

    class Count(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            cars.append(max(int((s.gt_instances_3d.labels_3d == 0).sum()) for s in data_batch['data_samples']))

    cfg.default_hooks.checkpoint.interval = 10**6
    runner = Runner.from_cfg(cfg)
    runner.register_hook(Count())
    runner.train()
    assert len(cars) == 2 * n_pass + 1
    assert min(cars[:n_pass]) > real  # pass 0: pasted
    assert max(cars[n_pass:]) <= real  # passes 1, 2: stopped, in the restarted worker


def test_lidar_only_stage_pipeline_pastes_on_nuscenes_format_data(demo_root):
    """Stage 1's CBGS + GT-paste pipeline runs on a nuScenes-format root with its database: the
    samples come without images, with more objects than their infos hold."""
    from mmengine.registry import init_default_scope

    from fuller.engine import base_dataset, read_config, set_data_root
    from fuller.registry import DATASETS
    from fuller.utils.cli import REPO_ROOT

    cfg = read_config(osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_l_voxel0075_8x4-20e_nuscenes.py'))
    set_data_root(base_dataset(cfg.train_dataloader.dataset), demo_root.rstrip('/') + '/')
    init_default_scope('fuller')
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    src = ds.dataset
    gained = 0
    for i in range(4):
        item = ds[i]
        assert 'imgs' not in item['inputs'] and item['inputs']['points'].shape[1] == 5
        labels = src.get_ann_info(ds.sample_indices[i])['gt_labels_3d']  # the boxes kept (use_valid_flag)
        gained += len(item['data_samples'].gt_instances_3d.labels_3d) - int((labels >= 0).sum())
    assert gained > 0


def test_demo_gt_paste_config_is_the_main_job_plus_paste():
    """The opt-in demo config differs from the main job by the ObjectPaste step only, placed as in
    BEVFusion's train_pipeline (right after LoadAnnotations3D), with BEVFusion's db_sampler values."""
    from fuller.engine import base_dataset, read_config
    from fuller.utils.cli import REPO_ROOT

    main = read_config(osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'))
    paste = read_config(osp.join(REPO_ROOT, 'configs', 'fuller',
                                 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map_gt-paste.py'))
    steps = base_dataset(paste.train_dataloader.dataset).pipeline
    i = [t['type'] for t in steps].index('ObjectPaste')
    assert steps[i - 1]['type'] == 'LoadAnnotations3D'
    assert steps[:i] + steps[i + 1:] == base_dataset(main.train_dataloader.dataset).pipeline
    assert steps[i]['db_sampler']['sample_groups'] == SAMPLE_GROUPS and steps[i]['stop_epoch'] == 7
    assert paste.model == main.model and paste.optim_wrapper == main.optim_wrapper
