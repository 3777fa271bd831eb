"""The CenterPoint detection head, defined once (configs/_base_/models/centerpoint_det_head.py),
against mmdet3d's nuScenes CenterPoint: configs/_base_/models/centerpoint_01voxel_second_secfpn_nus.py
(pts_bbox_head, train_cfg.pts, test_cfg.pts) with nms_type='circle' of its circlenms variants."""

import os.path as osp

import pytest

from fuller.engine import read_config
from fuller.utils.cli import REPO_ROOT

NUSCENES = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_swint-centerpoint_8x4-20e_nuscenes-det-map.py')
HEAD_BASE = osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'centerpoint_det_head.py')
DEMO = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')


@pytest.fixture(scope='module')
def heads():
    return {name: read_config(path).model.heads.det for name, path in (('nuscenes', NUSCENES), ('demo', DEMO))}


def test_the_nuscenes_head_is_mmdet3ds_centerpoint(heads):
    det = heads['nuscenes']
    # pts_bbox_head.tasks (num_class is implied by the names)
    assert [t['class_names'] for t in det.tasks] == [['car'], ['truck', 'construction_vehicle'], ['bus', 'trailer'],
                                                     ['barrier'], ['motorcycle', 'bicycle'],
                                                     ['pedestrian', 'traffic_cone']]
    # pts_bbox_head.common_heads, share_conv_channel, separate_head, losses, norm_bbox
    assert det.common_heads == dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2))
    assert det.share_conv_channel == 64 and det.norm_bbox is True
    assert det.separate_head == dict(type='mmdet3d.SeparateHead', init_bias=-2.19, final_kernel=3)
    assert det.loss_cls == dict(type='mmdet.GaussianFocalLoss', reduction='mean')
    assert det.loss_bbox == dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25)
    # pts_bbox_head.bbox_coder
    coder = det.bbox_coder
    assert coder.post_center_range == [-61.2, -61.2, -10.0, 61.2, 61.2, 10.0]
    assert (coder.max_num, coder.score_threshold, coder.code_size) == (500, 0.1, 9)
    # train_cfg.pts
    tr = det.train_cfg
    assert (tr.dense_reg, tr.gaussian_overlap, tr.max_objs, tr.min_radius) == (1, 0.1, 500, 2)
    assert tr.code_weights == [1.0] * 8 + [0.2, 0.2]
    # test_cfg.pts (nms_type 'circle': the circlenms variants)
    te = det.test_cfg
    assert te.post_center_limit_range == coder.post_center_range and te.max_per_img == 500
    assert te.min_radius == [4, 12, 10, 1, 0.85, 0.175] and te.score_threshold == 0.1
    assert (te.nms_type, te.pre_max_size, te.post_max_size, te.nms_thr, te.max_pool_nms) == \
        ('circle', 1000, 83, 0.2, False)


def test_the_demo_head_differs_only_in_its_box_budget(heads):
    nus, demo = heads['nuscenes'].to_dict(), heads['demo'].to_dict()
    nus.pop('tasks')  # the demo groups the classes by default (fuller/models/derive.py)
    for key, value in (('bbox_coder', dict(max_num=200, score_threshold=0.05)), ('train_cfg', dict(max_objs=200)),
                       ('test_cfg', dict(max_per_img=200, score_threshold=0.05))):
        nus[key].update(value)
    assert demo == nus


def test_the_nuscenes_variant_restates_the_head_base_unchanged():
    """The nuScenes CenterPoint variant states the head again (mmengine merges bases by key, so it
    cannot take ./centerpoint_det_head.py over TransFusion): the two copies must not drift."""
    from mmengine.config import Config

    base = Config.fromfile(HEAD_BASE).model.heads.det.to_dict()
    variant = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'models',
                                       'fuller_lc_swint-centerpoint_nuscenes.py')).model.heads.det.to_dict()
    variant.pop('tasks')
    assert variant == base
