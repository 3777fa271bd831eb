"""FULLER's BEVFusion configs against BEVFusion-MIT's, setting by setting.

Each row: a key of the resolved FULLER config (after the grids and channels FULLER derives from
``geometry``, the metainfo and the built encoders: fuller/models/derive.py), the value
BEVFusion-MIT sets, and the yaml key it comes from (mit-han-lab/bevfusion, configs/nuscenes/...).
Files: ``det`` = det/transfusion/secfpn/camera+lidar/swint_v0p075/convfuser.yaml and the files it
extends (default.yaml, det/default.yaml, det/transfusion/default.yaml, det/transfusion/secfpn/
default.yaml, .../camera+lidar/default.yaml, .../swint_v0p075/default.yaml); ``seg`` =
seg/fusion-bev256d2-lss.yaml with seg/default.yaml and default.yaml. Where FULLER's convention
differs, the row says how (voxel axes z, y, x where BEVFusion's are x, y, z).
"""

import os.path as osp

import pytest

from fuller.engine import read_config
from fuller.models.derive import derive_grids, fill_channels
from fuller.utils.cli import REPO_ROOT

DET = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_lc_swint_8x4-6e_nuscenes.py')
MAP = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-map_lc_swint_8x4-20e_nuscenes.py')
JOINT = [osp.join(REPO_ROOT, 'configs', 'fuller', f'{m}_lc_swint_8x4-20e_nuscenes-det-map.py') for m in ('naive', 'fuller')]

SWIN = [  # swint_v0p075/default.yaml and seg/fusion-bev256d2-lss.yaml: model.encoders.camera.backbone
    ('encoders.camera.backbone.type', 'mmdet.SwinTransformer', 'encoders.camera.backbone.type: SwinTransformer'),
    ('encoders.camera.backbone.embed_dims', 96, 'encoders.camera.backbone.embed_dims'),
    ('encoders.camera.backbone.depths', [2, 2, 6, 2], 'encoders.camera.backbone.depths'),
    ('encoders.camera.backbone.num_heads', [3, 6, 12, 24], 'encoders.camera.backbone.num_heads'),
    ('encoders.camera.backbone.window_size', 7, 'encoders.camera.backbone.window_size'),
    ('encoders.camera.backbone.mlp_ratio', 4, 'encoders.camera.backbone.mlp_ratio'),
    ('encoders.camera.backbone.qkv_bias', True, 'encoders.camera.backbone.qkv_bias'),
    ('encoders.camera.backbone.qk_scale', None, 'encoders.camera.backbone.qk_scale'),
    ('encoders.camera.backbone.drop_rate', 0.0, 'encoders.camera.backbone.drop_rate'),
    ('encoders.camera.backbone.attn_drop_rate', 0.0, 'encoders.camera.backbone.attn_drop_rate'),
    ('encoders.camera.backbone.patch_norm', True, 'encoders.camera.backbone.patch_norm'),
    ('encoders.camera.backbone.out_indices', [1, 2, 3], 'encoders.camera.backbone.out_indices'),
    ('encoders.camera.backbone.with_cp', False, 'encoders.camera.backbone.with_cp'),
    ('encoders.camera.backbone.convert_weights', True, 'encoders.camera.backbone.convert_weights'),
]
NECK = [  # det/.../camera+lidar/default.yaml (in_channels: swint_v0p075/default.yaml) and seg/fusion-bev256d2-lss.yaml
    ('encoders.camera.neck.type', 'GeneralizedLSSFPN', 'encoders.camera.neck.type'),
    ('encoders.camera.neck.in_channels', [192, 384, 768], 'encoders.camera.neck.in_channels'),
    ('encoders.camera.neck.out_channels', 256, 'encoders.camera.neck.out_channels'),
    ('encoders.camera.neck.start_level', 0, 'encoders.camera.neck.start_level'),
    ('encoders.camera.neck.num_outs', 3, 'encoders.camera.neck.num_outs'),
    ('encoders.camera.neck.norm_cfg', dict(type='BN2d', requires_grad=True), 'encoders.camera.neck.norm_cfg'),
    ('encoders.camera.neck.act_cfg', dict(type='ReLU', inplace=True), 'encoders.camera.neck.act_cfg'),
    ('encoders.camera.neck.upsample_cfg', dict(mode='bilinear', align_corners=False), 'encoders.camera.neck.upsample_cfg'),
]
VTRANSFORM = [  # the common keys of both files' encoders.camera.vtransform
    ('encoders.camera.vtransform.in_channels', 256, 'encoders.camera.vtransform.in_channels'),
    ('encoders.camera.vtransform.out_channels', 80, 'encoders.camera.vtransform.out_channels'),
    ('encoders.camera.vtransform.image_size', [256, 704], 'image_size (default.yaml, det/default.yaml)'),
    ('encoders.camera.vtransform.feature_size', [32, 88], 'encoders.camera.vtransform.feature_size: image_size // 8'),
    ('encoders.camera.vtransform.zbound', [-10.0, 10.0, 20.0], 'encoders.camera.vtransform.zbound'),
    ('encoders.camera.vtransform.dbound', [1.0, 60.0, 0.5], 'encoders.camera.vtransform.dbound'),
    ('encoders.camera.vtransform.downsample', 2, 'encoders.camera.vtransform.downsample'),
    ('encoders.camera.vtransform.cell_index', 'trunc', "vtransforms/base.py bev_pool: .long() of the cell coordinates"),
]
SPARSE = [  # det/.../camera+lidar/default.yaml, seg/fusion-bev256d2-lss.yaml: encoders.lidar
    ('encoders.lidar.voxelize.max_num_points', 10, 'encoders.lidar.voxelize.max_num_points'),
    ('encoders.lidar.voxel_encoder.num_features', 5, 'use_dim 5 (default.yaml), BEVFusion voxelize_reduce mean'),
    ('encoders.lidar.backbone.type', 'ResidualSparseEncoder',
     'encoders.lidar.backbone.type: SparseEncoder, block_type basicblock'),
    ('encoders.lidar.backbone.in_channels', 5, 'encoders.lidar.backbone.in_channels'),
    ('encoders.lidar.backbone.output_channels', 128, 'encoders.lidar.backbone.output_channels'),
    ('encoders.lidar.backbone.order', ('conv', 'norm', 'act'), 'encoders.lidar.backbone.order'),
    ('encoders.lidar.backbone.encoder_channels', [[16, 16, 32], [32, 32, 64], [64, 64, 128], [128, 128]],
     'encoders.lidar.backbone.encoder_channels'),
    # BEVFusion's [0, 0, [1, 1, 0]] in (x, y, z) is [0, 1, 1] in FULLER's (z, y, x)
    ('encoders.lidar.backbone.encoder_paddings', [[0, 0, 1], [0, 0, 1], [0, 0, [0, 1, 1]], [0, 0]],
     'encoders.lidar.backbone.encoder_paddings (axes reversed)'),
    ('encoders.lidar.backbone.block_type', 'basicblock', 'encoders.lidar.backbone.block_type'),
]
FUSER_DECODER = [  # fuser: det/.../swint_v0p075/convfuser.yaml, seg/fusion-bev256d2-lss.yaml;
    # decoder: det/transfusion/secfpn/default.yaml, seg/fusion-bev256d2-lss.yaml
    ('fuser.type', 'ConvFuser', 'fuser.type'),
    ('fuser.in_channels', [80, 256], 'fuser.in_channels'),
    ('fuser.out_channels', 256, 'fuser.out_channels'),
    ('decoder.backbone.type', 'mmdet3d.SECOND', 'decoder.backbone.type'),
    ('decoder.backbone.in_channels', 256, 'decoder.backbone.in_channels'),
    ('decoder.backbone.out_channels', [128, 256], 'decoder.backbone.out_channels'),
    ('decoder.backbone.layer_nums', [5, 5], 'decoder.backbone.layer_nums'),
    ('decoder.backbone.layer_strides', [1, 2], 'decoder.backbone.layer_strides'),
    ('decoder.backbone.norm_cfg', dict(type='BN', eps=1e-3, momentum=0.01), 'decoder.backbone.norm_cfg'),
    ('decoder.backbone.conv_cfg', dict(type='Conv2d', bias=False), 'decoder.backbone.conv_cfg'),
    ('decoder.neck.type', 'mmdet3d.SECONDFPN', 'decoder.neck.type'),
    ('decoder.neck.in_channels', [128, 256], 'decoder.neck.in_channels'),
    ('decoder.neck.out_channels', [256, 256], 'decoder.neck.out_channels'),
    ('decoder.neck.upsample_strides', [1, 2], 'decoder.neck.upsample_strides'),
    ('decoder.neck.norm_cfg', dict(type='BN', eps=1e-3, momentum=0.01), 'decoder.neck.norm_cfg'),
    ('decoder.neck.upsample_cfg', dict(type='deconv', bias=False), 'decoder.neck.upsample_cfg'),
    ('decoder.neck.use_conv_for_no_stride', True, 'decoder.neck.use_conv_for_no_stride'),
]
TRANSFUSION = [  # det/transfusion/default.yaml: heads.object (in_channels: secfpn/default.yaml; grid: swint_v0p075)
    ('heads.det.type', 'TransFusionHead', 'heads.object.type'),
    ('heads.det.in_channels', 512, 'heads.object.in_channels (det/transfusion/secfpn/default.yaml)'),
    ('heads.det.num_proposals', 200, 'heads.object.num_proposals'),
    ('heads.det.auxiliary', True, 'heads.object.auxiliary'),
    ('heads.det.hidden_channel', 128, 'heads.object.hidden_channel'),
    ('heads.det.num_classes', 10, 'heads.object.num_classes'),
    ('heads.det.num_decoder_layers', 1, 'heads.object.num_decoder_layers'),
    ('heads.det.num_heads', 8, 'heads.object.num_heads'),
    ('heads.det.nms_kernel_size', 3, 'heads.object.nms_kernel_size'),
    ('heads.det.ffn_channel', 256, 'heads.object.ffn_channel'),
    ('heads.det.dropout', 0.1, 'heads.object.dropout'),
    ('heads.det.bn_momentum', 0.1, 'heads.object.bn_momentum'),
    ('heads.det.activation', 'relu', 'heads.object.activation'),
    ('heads.det.common_heads', dict(center=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
     'heads.object.common_heads'),
    ('heads.det.train_cfg.dataset', 'nuScenes', 'heads.object.train_cfg.dataset'),
    ('heads.det.train_cfg.grid_size', [1440, 1440, 41], 'heads.object.train_cfg.grid_size (swint_v0p075/default.yaml)'),
    ('heads.det.train_cfg.voxel_size', [0.075, 0.075, 0.2], 'voxel_size (swint_v0p075/default.yaml)'),
    ('heads.det.train_cfg.point_cloud_range', [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0], 'point_cloud_range (swint_v0p075)'),
    ('heads.det.train_cfg.out_size_factor', 8, 'heads.object.train_cfg.out_size_factor'),
    ('heads.det.train_cfg.gaussian_overlap', 0.1, 'heads.object.train_cfg.gaussian_overlap'),
    ('heads.det.train_cfg.min_radius', 2, 'heads.object.train_cfg.min_radius'),
    ('heads.det.train_cfg.pos_weight', -1, 'heads.object.train_cfg.pos_weight'),
    ('heads.det.train_cfg.code_weights', [1.0] * 8 + [0.2, 0.2], 'heads.object.train_cfg.code_weights'),
    ('heads.det.train_cfg.assigner.cls_cost', dict(type='mmdet.FocalLossCost', gamma=2.0, alpha=0.25, weight=0.15),
     'heads.object.train_cfg.assigner.cls_cost'),
    ('heads.det.train_cfg.assigner.reg_cost', dict(type='BBoxBEVL1Cost', weight=0.25),
     'heads.object.train_cfg.assigner.reg_cost'),
    ('heads.det.train_cfg.assigner.iou_cost', dict(type='IoU3DCost', weight=0.25),
     'heads.object.train_cfg.assigner.iou_cost'),
    ('heads.det.train_cfg.assigner.iou_calculator', dict(type='mmdet3d.BboxOverlaps3D', coordinate='lidar'),
     'heads.object.train_cfg.assigner.iou_calculator'),
    ('heads.det.test_cfg.grid_size', [1440, 1440, 41], 'heads.object.test_cfg.grid_size (swint_v0p075/default.yaml)'),
    ('heads.det.test_cfg.nms_type', None, 'heads.object.test_cfg.nms_type'),
    ('heads.det.test_cfg.out_size_factor', 8, 'heads.object.test_cfg.out_size_factor'),
    ('heads.det.test_cfg.pc_range', [-54.0, -54.0], 'heads.object.test_cfg.pc_range'),
    ('heads.det.bbox_coder.post_center_range', [-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
     'heads.object.bbox_coder.post_center_range'),
    ('heads.det.bbox_coder.score_threshold', 0.0, 'heads.object.bbox_coder.score_threshold'),
    ('heads.det.bbox_coder.code_size', 10, 'heads.object.bbox_coder.code_size'),
    ('heads.det.bbox_coder.voxel_size', [0.075, 0.075], 'heads.object.bbox_coder.voxel_size'),
    ('heads.det.loss_cls', dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, reduction='mean',
                                loss_weight=1.0), 'heads.object.loss_cls'),
    ('heads.det.loss_heatmap', dict(type='mmdet.GaussianFocalLoss', reduction='mean', loss_weight=1.0),
     'heads.object.loss_heatmap'),
    ('heads.det.loss_bbox', dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25), 'heads.object.loss_bbox'),
]
MAP_HEAD = [  # seg/default.yaml: heads.map (in_channels: seg/fusion-bev256d2-lss.yaml)
    ('heads.map.type', 'BEVSegmentationHead', 'heads.map.type'),
    ('heads.map.in_channels', 512, 'heads.map.in_channels (seg/fusion-bev256d2-lss.yaml)'),
    ('heads.map.classes', ['drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider'],
     'map_classes (default.yaml)'),
    ('heads.map.grid_transform.output_scope', [[-50, 50, 0.5], [-50, 50, 0.5]], 'heads.map.grid_transform.output_scope'),
]

DET_ROWS = SWIN + NECK + VTRANSFORM + SPARSE + FUSER_DECODER + TRANSFUSION + [
    ('encoders.camera.backbone.drop_path_rate', 0.2, 'encoders.camera.backbone.drop_path_rate (swint_v0p075)'),
    ('encoders.camera.vtransform.type', 'DepthLSSViewTransform', 'encoders.camera.vtransform.type: DepthLSSTransform'),
    ('encoders.camera.vtransform.xbound', [-54.0, 54.0, 0.3], 'encoders.camera.vtransform.xbound (swint_v0p075)'),
    ('encoders.camera.vtransform.ybound', [-54.0, 54.0, 0.3], 'encoders.camera.vtransform.ybound (swint_v0p075)'),
    ('encoders.lidar.voxelize.point_cloud_range', [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0], 'point_cloud_range (swint_v0p075)'),
    ('encoders.lidar.voxelize.voxel_size', [0.075, 0.075, 0.2], 'voxel_size (swint_v0p075)'),
    ('encoders.lidar.voxelize.max_voxels', [120000, 160000], 'encoders.lidar.voxelize.max_voxels (swint_v0p075)'),
    ('encoders.lidar.backbone.sparse_shape', [41, 1440, 1440],
     'encoders.lidar.backbone.sparse_shape [1440, 1440, 41] (z, y, x)'),
]
MAP_ROWS = SWIN + NECK + VTRANSFORM + SPARSE + FUSER_DECODER + MAP_HEAD + [
    ('encoders.camera.backbone.drop_path_rate', 0.3, 'encoders.camera.backbone.drop_path_rate (seg)'),
    ('encoders.camera.vtransform.type', 'LSSViewTransform', 'encoders.camera.vtransform.type: LSSTransform'),
    ('encoders.camera.vtransform.xbound', [-51.2, 51.2, 0.4], 'encoders.camera.vtransform.xbound (seg)'),
    ('encoders.camera.vtransform.ybound', [-51.2, 51.2, 0.4], 'encoders.camera.vtransform.ybound (seg)'),
    ('encoders.lidar.voxelize.point_cloud_range', [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0], 'point_cloud_range (default.yaml)'),
    ('encoders.lidar.voxelize.voxel_size', [0.1, 0.1, 0.2], 'voxel_size (default.yaml)'),
    ('encoders.lidar.voxelize.max_voxels', [90000, 120000], 'encoders.lidar.voxelize.max_voxels (seg)'),
    ('encoders.lidar.backbone.sparse_shape', [41, 1024, 1024],
     'encoders.lidar.backbone.sparse_shape [1024, 1024, 41] (z, y, x)'),
    ('heads.map.grid_transform.input_scope', [[-51.2, 51.2, 0.8], [-51.2, 51.2, 0.8]],
     'heads.map.grid_transform.input_scope'),
]


def resolved_model(path: str) -> dict:
    """The model config as FullerNet builds it: derived grids, class lists and channels."""
    m = read_config(path).model
    encoders, heads = derive_grids(m.encoders, {k: v for k, v in m.heads.items() if v is not None}, m.geometry,
                                   m.get('metainfo'))
    channels = {k: (v['vtransform']['out_channels'] if k == 'camera' else v['backbone']['output_channels'] * 2)
                for k, v in encoders.items()}  # the LiDAR BEV: 128 channels x 2 z cells
    fuser, decoder, heads = fill_channels(m.fuser, m.decoder, heads, channels)
    return dict(encoders=encoders, fuser=fuser, decoder=decoder, heads=heads)


def _get(tree: dict, path: str):
    for part in path.split('.'):
        if part not in tree:
            raise KeyError(f'{path}: no {part!r}')
        tree = tree[part]
    return tree


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) < 1e-9
    return a == b


@pytest.mark.parametrize('path,rows', [(DET, DET_ROWS), (MAP, MAP_ROWS)] + [(p, DET_ROWS + MAP_HEAD) for p in JOINT],
                         ids=['det', 'map', 'naive-det-map', 'fuller-det-map'])
def test_config_equals_bevfusions(path, rows):
    model = resolved_model(path)
    wrong = [f'{key} = {_get(model, key)!r}, BEVFusion {want!r} ({src})' for key, want, src in rows
             if not _same(_get(model, key), want)]
    assert not wrong, '\n'.join(wrong)


def test_single_task_configs_have_one_head_and_bevfusions_schedule():
    det, seg = read_config(DET), read_config(MAP)
    assert det.model.heads.map is None and seg.model.heads.det is None
    # det/transfusion/secfpn/default.yaml optimizer (AdamW, wd 0.01, clip 35) with lr 2e-4 and
    # max_epochs 6 (camera+lidar/default.yaml); lr_config CosineAnnealing, warm-up linear 500
    # iterations from 0.33333333, min_lr_ratio 1e-3 (swint_v0p075/default.yaml)
    assert det.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.01)
    assert 'paramwise_cfg' not in det.optim_wrapper
    assert det.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2)
    assert det.train_cfg.max_epochs == 6
    warm, cos = det.param_scheduler[:2]
    # (end=501: mmengine's LinearLR ends at step end - 1; the schedule over whole runs is checked
    # against mmcv's in test_bevfusion_recipe.py::test_six_epoch_cosine_steps_by_epoch_like_mmcv)
    assert (warm.type, warm.start_factor, warm.end, warm.by_epoch) == ('LinearLR', 0.33333333, 501, False)
    assert (cos.type, cos.eta_min_ratio, cos.end, cos.by_epoch) == ('CosineAnnealingLR', 1e-3, 6, True)
    assert not cos.get('convert_to_iter_based')  # mmcv's LrUpdaterHook: by_epoch=True
    # mmcv's cyclic momentum (secfpn/default.yaml momentum_config): 40% down to 0.85/0.95, back to 1
    down, up = det.param_scheduler[2:]
    assert (down.end, down.eta_min_ratio, up.begin, up.end, up.eta_min_ratio) == (2.4, 0.85 / 0.95, 2.4, 6, 1.0)
    # seg/fusion-bev256d2-lss.yaml: lr 1e-4, the Swin position tables without decay, 20 epochs
    assert seg.optim_wrapper.optimizer.lr == 1e-4 and seg.train_cfg.max_epochs == 20
    assert set(seg.optim_wrapper.paramwise_cfg.custom_keys) == {'absolute_pos_embed', 'relative_position_bias_table'}
