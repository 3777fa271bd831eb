"""A class list or a grid changed in one place reaches the dataset, the model, the metrics and
the picture hook consistently."""

import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from fuller.testing import REPO_ROOT, tiny_config

FULLER = osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
FORK = """_base_ = ['{base}']
metainfo = dict(classes=['car', 'pedestrian', 'barrier'], map_classes=['drivable_area', 'divider'])
geometry = dict(voxel_size=[0.4, 0.4, 0.5], bev_stride=4,
                map_bound=dict(xbound=(-40.0, 40.0, 0.8), ybound=(-30.0, 30.0, 0.6)))
"""


@pytest.fixture(scope='module')
def fork(demo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('fork')
    path = tmp / 'fork.py'
    path.write_text(FORK.format(base=FULLER))
    return tiny_config(demo_root, str(tmp / 'work'), config=str(path))


def test_class_list_and_grid_stated_once_reach_every_part(fork, tmp_path):
    from fuller.engine.hooks import BEVVisualizationHook
    from fuller.evaluation import BEVMapIoUMetric, NuScenesDetMetric
    from fuller.registry import DATASETS, MODELS

    init_default_scope('fuller')
    classes, map_classes = ['car', 'pedestrian', 'barrier'], ['drivable_area', 'divider']
    train = DATASETS.build(fork.train_dataloader.dataset)
    test = DATASETS.build(fork.test_dataloader.dataset)
    for ds in (train, test):
        assert list(ds.metainfo['classes']) == classes and list(ds.metainfo['map_classes']) == map_classes
    # Pipelines filled from the geometry and the metainfo.
    steps = {type(t).__name__: t for t in train.pipeline.transforms}
    assert list(steps['ObjectNameFilter'].classes) == classes
    assert np.allclose(steps['PointsRangeFilter'].pcd_range.cpu().numpy() if hasattr(
        steps['PointsRangeFilter'].pcd_range, 'cpu') else steps['PointsRangeFilter'].pcd_range,
        [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0])
    assert steps['LoadBEVMapMask'].classes == tuple(map_classes)
    assert steps['LoadBEVMapMask'].xbound == (-40.0, 40.0, 0.8)
    sample = train[0]
    labels = sample['data_samples'].gt_instances_3d.labels_3d
    assert len(labels) and int(labels.max()) < 3 and int(labels.min()) >= 0
    assert tuple(sample['data_samples'].gt_map.shape) == (2, 100, 100)  # 80 m / 0.8, 60 m / 0.6

    # The model: 256 x 256 voxels, 3 sparse stages (stride 4), a 64 x 64 BEV; the heads' classes.
    model = MODELS.build(fork.model)
    assert model.encoders['lidar'].backbone.sparse_shape == [16, 256, 256]
    assert model.heads['det'].head.class_names == [classes]
    assert model.heads['map'].classes == tuple(map_classes)
    assert tuple(model.heads['map'].transform.grid.shape[1:3]) == (100, 100)
    ow = build_optim_wrapper(model, fork.optim_wrapper)
    log = model.train_step(pseudo_collate([sample]), ow)
    assert all(np.isfinite(float(v)) for v in log.values())

    # Prediction -> metrics reading the dataset's metainfo.
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(pseudo_collate([test[0]]), False)
        out = model(**batch, mode='predict')
    assert out[0].pred_map.shape[0] == 2
    assert int(out[0].pred_instances_3d.labels_3d.max()) < 3
    seg = BEVMapIoUMetric()
    seg.dataset_meta = test.metainfo
    seg.process({}, [s.to_dict() for s in out])
    res = seg.compute_metrics(seg.results)
    assert set(k for k in res if k.startswith('IoU_')) == {f'IoU_{c}' for c in map_classes}
    det = NuScenesDetMetric(fork.test_dataloader.dataset.data_root, version='v1.0-mini')
    det.dataset_meta = test.metainfo
    assert det.classes == tuple(classes)
    token, recs = det.sample_records(out[0].to_dict())
    assert {r['detection_name'] for r in recs} <= set(classes)

    # The picture hook takes classes, cameras and the map extent from the built dataset.
    hook = BEVVisualizationHook(show_dir=str(tmp_path / 'vis'))
    runner = SimpleNamespace(work_dir=str(tmp_path), rank=0, test_dataloader=SimpleNamespace(dataset=test))
    hook.before_test(runner)
    assert hook.map_extent == (-40.0, 40.0, -30.0, 30.0)
    assert hook.class_names == tuple(classes) and hook.map_classes == tuple(map_classes)
    assert hook.cam_names == tuple(test.metainfo['cameras'])


def test_a_grid_key_set_against_the_geometry_names_it(fork):
    from fuller.registry import MODELS

    init_default_scope('fuller')
    bad = fork.model.copy()
    bad.encoders = dict(fork.model.encoders)
    bad.encoders['lidar'] = dict(fork.model.encoders.lidar, backbone=dict(fork.model.encoders.lidar.backbone,
                                                                           sparse_shape=[16, 128, 128]))
    with pytest.raises(ValueError, match=r'model\.encoders\.lidar\.backbone\.sparse_shape = \[16, 128, 128\] but the '
                                         r'geometry gives \[16, 256, 256\]'):
        MODELS.build(bad)


def test_metainfo_with_a_foreign_name_is_refused(fork):
    from fuller.registry import DATASETS

    cfg = dict(fork.train_dataloader.dataset, metainfo=dict(classes=['car', 'tram']))
    with pytest.raises(KeyError, match=r"metainfo\.classes has names \['tram'\]"):
        DATASETS.build(cfg)


def test_metainfo_from_a_config_saves_in_a_checkpoint_the_safe_loader_reads(fork):
    """A config's nested metainfo (the demo's ``map_layers``) reaches the dataset as ConfigDicts; the
    runner writes the dataset's metainfo into every checkpoint's ``meta.dataset_meta``, and
    ``SafeCheckpointHook`` saves it as plain dicts, which the safe loader (``weights_only``) reads."""
    import io

    from fuller.engine.checkpoint_hook import from_plain, to_plain
    from fuller.registry import DATASETS

    init_default_scope('fuller')
    meta = DATASETS.build(fork.train_dataloader.dataset).metainfo
    buf = io.BytesIO()
    torch.save({'meta': to_plain({'dataset_meta': meta}), 'state_dict': {'w': torch.zeros(1)}}, buf)
    buf.seek(0)
    loaded = from_plain(torch.load(buf, weights_only=True)['meta'])['dataset_meta']
    assert type(loaded['map_layers']) is dict and tuple(loaded['map_layers']['drivable_area']) == ('road_segment', 'lane')
    assert loaded['map_layers'] == meta['map_layers']
