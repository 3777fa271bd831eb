"""The loading path on one real nuScenes keyframe (../shared; never copied into the repo)."""

import pickle

import numpy as np
from mmengine.registry import init_default_scope

from fuller.registry import DATASETS

from .test_demo_data import check_points_project_into_boxes


def test_real_keyframe_loads_and_boxes_project(real_keyframe):
    init_default_scope('fuller')
    pipeline = [dict(type='LoadMultiSweepPoints', sweeps=0), dict(type='LoadMultiViewImages'),
                dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True)]
    ds = DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=real_keyframe + '/',
                             ann_file='mmdet3d_info.pkl', pipeline=pipeline, filter_empty_gt=False,
                             metainfo=dict(classes=['car', 'truck', 'trailer', 'bus', 'construction_vehicle',
                                                    'bicycle', 'motorcycle', 'pedestrian', 'traffic_cone',
                                                    'barrier'])))
    out = ds.get_data_info(0)
    assert len(out['instances']) == 69
    res = ds[0]
    assert res['points'].shape == (34688, 5)
    assert len(res['imgs']) == 6 and res['imgs'][0].shape == (900, 1600, 3)
    assert res['cam2img'].shape == (6, 4, 4)
    with open(f'{real_keyframe}/mmdet3d_info.pkl', 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    checked = check_points_project_into_boxes(info, res['points'].tensor.numpy(), min_checked=10)
    assert checked >= 10
    assert np.isfinite(res['gt_bboxes_3d'].tensor.numpy()).all()
