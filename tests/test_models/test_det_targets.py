"""The detection head's training targets equal mmdet3d's ``CenterHead.get_targets``.

``VectorTargetsCenterHead`` computes them with tensor operations over the boxes; mmdet3d's
``CenterHead.get_targets_single`` (``mmdet3d/models/dense_heads/centerpoint_head.py``) loops over
them. Compared on boxes that exercise every branch of mmdet3d's loop: centres outside the grid,
centres less than one cell below its lower edge (kept: mmdet3d truncates toward zero), boxes of
zero length or width (skipped), more boxes than ``max_objs`` (cut), and several task groups.
"""

import numpy as np
import pytest
import torch
from mmdet3d.structures import LiDARInstance3DBoxes
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from fuller.models.heads.det_head import VectorTargetsCenterHead
from fuller.registry import MODELS

CLASSES = ['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle', 'bicycle',
           'pedestrian', 'traffic_cone']
# BEVFusion's and mmdet3d's nuScenes CenterPoint grouping (configs/_base_/models/centerpoint_*_nus.py).
SIX_GROUPS = [['car'], ['truck', 'construction_vehicle'], ['bus', 'trailer'], ['barrier'], ['motorcycle', 'bicycle'],
              ['pedestrian', 'traffic_cone']]


def head_cfg(groups, max_objs=500, out_size_factor=8, min_radius=2):
    return dict(
        in_channels=16, tasks=[dict(num_class=len(g), class_names=g) for g in groups],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)), share_conv_channel=8,
        bbox_coder=dict(type='mmdet3d.CenterPointBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                        max_num=500, score_threshold=0.1, out_size_factor=out_size_factor, voxel_size=[0.1, 0.1],
                        pc_range=[-51.2, -51.2], code_size=9),
        separate_head=dict(type='mmdet3d.SeparateHead', init_bias=-2.19, final_kernel=3),
        loss_cls=dict(type='mmdet.GaussianFocalLoss', reduction='mean'),
        loss_bbox=dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25), norm_bbox=True,
        train_cfg=dict(grid_size=[1024, 1024, 40], voxel_size=[0.1, 0.1, 0.2], out_size_factor=out_size_factor,
                       point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0], dense_reg=1, gaussian_overlap=0.1,
                       max_objs=max_objs, min_radius=min_radius,
                       code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2]))


def random_boxes(n, seed):
    g = np.random.default_rng(seed)
    xy = g.uniform(-58, 58, (n, 2))
    xy[: n // 8, 0] = -51.2 - g.uniform(0, 0.79, n // 8)  # less than a cell (0.8 m) below the edge: kept
    size = g.uniform(0.3, 12, (n, 3))
    size[n // 8: n // 8 + 3, 0] = 0  # zero-size boxes: skipped
    size[n // 8 + 3: n // 8 + 5, 1] = 0
    box = np.concatenate([xy, g.uniform(-3, 1, (n, 1)), size, g.uniform(-np.pi, np.pi, (n, 1)),
                          g.normal(0, 3, (n, 2))], 1)
    inst = InstanceData()
    inst.bboxes_3d = LiDARInstance3DBoxes(torch.tensor(box, dtype=torch.float32), box_dim=9)
    inst.labels_3d = torch.as_tensor(g.integers(0, len(CLASSES), n))
    return inst


@pytest.mark.parametrize('groups,max_objs,factor,n', [
    (SIX_GROUPS, 500, 8, 120),       # nuScenes' six groups (BEVFusion, mmdet3d)
    ([CLASSES], 200, 8, 150),        # FULLER's demo head: one group of all classes
    ([CLASSES], 20, 4, 60),          # more boxes than max_objs; a finer grid (larger radii)
    (SIX_GROUPS, 500, 8, 0),         # no boxes
])
def test_targets_equal_mmdet3d(groups, max_objs, factor, n):
    init_default_scope('mmdet3d')
    ref = MODELS.build(dict(type='mmdet3d.CenterHead', **head_cfg(groups, max_objs, factor)))
    ours = VectorTargetsCenterHead(**head_cfg(groups, max_objs, factor))
    batch = [random_boxes(n, seed) for seed in range(3)]
    want, got = ref.get_targets(batch), ours.get_targets(batch)
    kept = 0
    for name, w, o in zip(('heatmap', 'anno_box', 'ind', 'mask'), want, got):
        assert len(w) == len(o) == len(groups)
        for task, (a, b) in enumerate(zip(w, o)):
            assert a.dtype == b.dtype and a.shape == b.shape, (name, task)
            if name == 'anno_box':  # sin, cos, log vectorised: equal to rounding
                torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6, msg=f'{name}, task {task}')
            else:
                assert torch.equal(a, b), (name, task)
            if name == 'mask':
                kept += int(a.sum())
    if n:
        assert kept > 0 and kept < 3 * min(n, max_objs * len(groups))  # some kept, some dropped


def test_edge_centres_are_kept_as_mmdet3d_keeps_them():
    """A centre 0.3 m below the grid's lower x edge lands in column 0 (truncation toward zero):
    the case where a vectorised floor would differ from mmdet3d's ``center.to(torch.int32)``."""
    init_default_scope('mmdet3d')
    inst = InstanceData()
    inst.bboxes_3d = LiDARInstance3DBoxes(torch.tensor([[-51.5, 3.0, -1.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0]]),
                                          box_dim=9)
    inst.labels_3d = torch.tensor([0])
    heatmap, anno_box, ind, mask = VectorTargetsCenterHead(**head_cfg([CLASSES])).get_targets([inst])
    assert mask[0][0, 0] == 1 and ind[0][0, 0] % 128 == 0
    assert anno_box[0][0, 0, 0] == pytest.approx(-0.3 / 0.8, abs=1e-5)
    assert heatmap[0][0, 0].max() == 1.0


def test_the_demo_model_uses_it(demo_root, tmp_path):
    from fuller.testing import tiny_config

    init_default_scope('fuller')
    model = MODELS.build(tiny_config(demo_root, str(tmp_path)).model)
    assert type(model.heads.det.head) is VectorTargetsCenterHead
