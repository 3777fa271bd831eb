"""The nuScenes configs against BEVFusion's recipe, value by value.

Each expected value cites the BEVFusion-MIT yaml key it comes from (mit-han-lab/bevfusion,
configs/nuscenes/...; the schedules follow mmcv 1.x's CyclicLrUpdaterHook and
CyclicMomentumUpdaterHook defaults, which BEVFusion's ``policy: cyclic`` selects).
"""

import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import PARAM_SCHEDULERS

from fuller.engine import base_dataset, read_config
from fuller.utils.cli import REPO_ROOT

NUSCENES = [osp.join(REPO_ROOT, 'configs', 'fuller', name) for name in (
    'naive_lc_swint_8x4-20e_nuscenes-det-map.py', 'fuller_lc_swint_8x4-20e_nuscenes-det-map.py',
    'fuller-lite_lc_swint_8x4-20e_nuscenes-det-map.py')]


@pytest.fixture(scope='module')
def cfg():
    return read_config(NUSCENES[0])


def _step(name, cfg, pipeline='train_pipeline'):
    steps = [t for t in base_dataset(cfg.train_dataloader.dataset).pipeline if t['type'].endswith(name)] \
        if pipeline == 'train_pipeline' else [t for t in cfg.test_dataloader.dataset.pipeline if t['type'].endswith(name)]
    assert len(steps) == 1, f'{name}: {len(steps)} steps in the {pipeline}'
    return steps[0]


def _annealing_cos(start, end, factor):
    """mmcv.runner.hooks.lr_updater.annealing_cos."""
    return end + 0.5 * (start - end) * (math.cos(math.pi * factor) + 1)


def _mmcv_cyclic(base, target_ratio, step_ratio_up, max_iters, it):
    """mmcv 1.x CyclicLrUpdaterHook / CyclicMomentumUpdaterHook (cyclic_times=1, cos) at ``it``."""
    up = int(step_ratio_up * max_iters)
    if it < up:
        return _annealing_cos(base, base * target_ratio[0], it / up)
    return _annealing_cos(base * target_ratio[0], base * target_ratio[1], (it - up) / (max_iters - up))


def test_optimizer_is_bevfusions(cfg):
    ow = cfg.optim_wrapper
    # seg/fusion-bev256d2-lss.yaml optimizer: {type: AdamW, lr: 1.0e-4, weight_decay: 0.01}; betas are
    # torch's AdamW default (0.9, 0.999), which mmcv's momentum hooks start from.
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.lr == 1e-4 and ow.optimizer.weight_decay == 0.01
    assert tuple(ow.optimizer.betas) == (0.9, 0.999)
    # seg/fusion-bev256d2-lss.yaml optimizer_config.grad_clip: {max_norm: 35, norm_type: 2}.
    assert ow.clip_grad == dict(max_norm=35, norm_type=2)
    # seg/fusion-bev256d2-lss.yaml optimizer.paramwise_cfg.custom_keys.
    assert ow.paramwise_cfg.custom_keys == dict(absolute_pos_embed=dict(decay_mult=0.0),
                                                relative_position_bias_table=dict(decay_mult=0.0))
    assert cfg.train_cfg.max_epochs == 20  # configs/default.yaml max_epochs: 20
    # configs/default.yaml fp16: {loss_scale: {growth_interval: 2000}}: mmdet3d/apis/train.py then
    # trains with mmcv's Fp16OptimizerHook (autocast float16, GradScaler(growth_interval=2000) from
    # torch's initial scale 2^16).
    assert ow.amp == 'float16' and ow.growth_interval == 2000 and ow.get('init_scale', 2.0**16) == 2.0**16
    # ... and evaluates in float16: tools/test.py calls wrap_fp16_model when the config has fp16, and
    # the EvalHook validates the model Fp16OptimizerHook.before_run wrapped.
    assert cfg.test_cfg == dict(type='AmpTestLoop', amp='float16')
    assert cfg.val_cfg == dict(type='AmpValLoop', amp='float16')


@pytest.mark.parametrize('path', NUSCENES[1:])
def test_calibrated_configs_keep_the_recipe(cfg, path):
    other = read_config(path)
    for key in ('optimizer', 'clip_grad', 'paramwise_cfg', 'amp', 'growth_interval'):
        assert other.optim_wrapper[key] == cfg.optim_wrapper[key], key
    assert other.param_scheduler == cfg.param_scheduler
    assert other.test_cfg == cfg.test_cfg and other.val_cfg == cfg.val_cfg


def test_swin_position_tables_get_no_weight_decay(cfg):
    """The paramwise keys match mmdet's SwinTransformer parameter names: all 12 relative-position
    tables of Swin-T are excluded from weight decay, every other weight keeps 0.01."""
    from mmdet3d.utils import register_all_modules

    from fuller.registry import MODELS
    register_all_modules(init_default_scope=False)
    swin = MODELS.build(cfg.model.encoders.camera.backbone)
    ow = dict(cfg.optim_wrapper, type='OptimWrapper')
    for key in ('clip_grad', 'amp', 'growth_interval'):  # GuardedOptimWrapper's, not the groups'
        ow.pop(key)
    built = DefaultOptimWrapperConstructor(ow, ow.pop('paramwise_cfg'))(swin)
    names = {id(p): n for n, p in swin.named_parameters()}
    no_decay = sorted(names[id(p)] for g in built.optimizer.param_groups if g['weight_decay'] == 0 for p in g['params'])
    assert len(no_decay) == 12 and all(n.endswith('relative_position_bias_table') for n in no_decay)
    assert all(g['weight_decay'] == 0.01 for g in built.optimizer.param_groups
               if not any(names[id(p)].endswith('relative_position_bias_table') for p in g['params']))


def _run_schedulers(cfg, epoch_len: int, epochs: int) -> tuple[list, list]:
    """lr and beta1 at every iteration of ``cfg``'s optimizer and schedulers, stepped as mmengine's
    ParamSchedulerHook steps them: iteration-based ones (and those converted to iterations) after
    every iteration, epoch-based ones after every epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], **{k: v for k, v in cfg.optim_wrapper.optimizer.items() if k != 'type'})
    scheds = [PARAM_SCHEDULERS.build(dict(s), default_args=dict(optimizer=opt, epoch_length=epoch_len))
              for s in cfg.param_scheduler]
    lrs, beta1 = [], []
    for _ in range(epochs):
        for _ in range(epoch_len):
            lrs.append(opt.param_groups[0]['lr'])
            beta1.append(opt.param_groups[0]['betas'][0])
            for s in scheds:
                if not s.by_epoch:
                    s.step()
        for s in scheds:
            if s.by_epoch:
                s.step()
    assert opt.param_groups[0]['betas'][1] == 0.999  # beta2 is not scheduled
    return lrs, beta1


def test_cyclic_schedule_steps_like_mmcv(cfg):
    """Learning rate and beta1 at every iteration of a 20-epoch run (100 iterations an epoch)
    equal mmcv's cyclic policies with their defaults (target_ratio (10, 1e-4) and
    (0.85 / 0.95, 1), step_ratio_up 0.4): lr 1e-4 -> 1e-3 (epoch 8) -> 1e-8, beta1
    0.9 -> 0.805 -> 0.9, never 1."""
    epoch_len, max_iters = 100, 2000
    lrs, beta1 = _run_schedulers(cfg, epoch_len, max_iters // epoch_len)
    want_lr = [_mmcv_cyclic(1e-4, (10, 1e-4), 0.4, max_iters, i) for i in range(max_iters)]
    want_b1 = [_mmcv_cyclic(0.9, (0.85 / 0.95, 1), 0.4, max_iters, i) for i in range(max_iters)]
    np.testing.assert_allclose(lrs, want_lr, rtol=1e-5, atol=1e-12)  # mmengine's recursive cosine: 3e-6
    np.testing.assert_allclose(beta1, want_b1, rtol=1e-6)
    assert lrs[0] == pytest.approx(1e-4) and lrs[800] == pytest.approx(1e-3, rel=1e-5) and lrs[-1] < 1e-7
    assert beta1[0] == pytest.approx(0.9) and beta1[800] == pytest.approx(0.9 * 0.85 / 0.95)
    assert beta1[-1] == pytest.approx(0.9, abs=1e-6) and max(beta1) <= 0.9 + 1e-9


def test_six_epoch_cosine_steps_by_epoch_like_mmcv():
    """The camera+LiDAR detection fine-tuning (det/transfusion/secfpn/camera+lidar/default.yaml: lr
    2e-4, max_epochs 6; .../swint_v0p075/default.yaml lr_config: CosineAnnealing, warmup linear,
    warmup_iters 500, warmup_ratio 0.33333333, min_lr_ratio 1e-3): mmcv 1.x's LrUpdaterHook
    defaults to by_epoch=True, so the lr is annealing_cos(lr, 1e-3 lr, epoch / 6), constant within
    an epoch, and the linear warm-up scales epoch 0's lr by iteration. Momentum: the cyclic policy,
    by iteration."""
    cfg = read_config(osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_lc_swint_8x4-6e_nuscenes.py'))
    assert cfg.optim_wrapper.amp == 'float16' and cfg.optim_wrapper.growth_interval == 2000  # default.yaml fp16
    epoch_len, epochs = 1000, 6
    lrs, beta1 = _run_schedulers(cfg, epoch_len, epochs)
    want = []
    for i in range(epoch_len * epochs):
        regular = _annealing_cos(2e-4, 2e-4 * 1e-3, (i // epoch_len) / epochs)
        want.append(regular * (1 - (1 - i / 500) * (1 - 0.33333333)) if i < 500 else regular)
    np.testing.assert_allclose(lrs, want, rtol=1e-6)
    assert lrs[999] == pytest.approx(2e-4) and lrs[-1] == pytest.approx(2e-4 * 0.0679, rel=1e-2)
    want_b1 = [_mmcv_cyclic(0.9, (0.85 / 0.95, 1), 0.4, epoch_len * epochs, i) for i in range(epoch_len * epochs)]
    np.testing.assert_allclose(beta1, want_b1, rtol=1e-6)


def test_augmentation_is_bevfusions(cfg):
    img = _step('ImageAug3D', cfg)
    # configs/nuscenes/default.yaml: image_size [256, 704]; augment2d.resize [[0.38, 0.55], [0.48, 0.48]];
    # augment2d.rotate [-5.4, 5.4]; ImageAug3D bot_pct_lim [0.0, 0.0], rand_flip true.
    assert tuple(cfg.geometry.image_size) == (256, 704)  # the datasets' ImageAug3D final_dim
    assert tuple(img['resize_lim']) == (0.38, 0.55) and tuple(img['rot_lim']) == (-5.4, 5.4)
    assert tuple(img['bot_pct_lim']) == (0.0, 0.0) and img['rand_flip'] and img['is_train']
    test_img = _step('ImageAug3D', cfg, 'test_pipeline')
    assert tuple(test_img['resize_lim']) == (0.48, 0.48) and not test_img['is_train']
    # mmdet3d/datasets/pipelines/transforms_3d.py ImageAug3D.img_transform: PIL's img.resize (bicubic,
    # its default) and img.rotate (nearest); tests/test_datasets/test_augmentation.py checks the pixels.
    assert img['backend'] == 'pillow' and test_img['backend'] == 'pillow'
    bev = _step('BEVAugmentation', cfg)
    # augment3d: scale [0.9, 1.1], rotate [-0.78539816, 0.78539816], translate 0.5 (one sigma for
    # all three axes, applied before the scale: GlobalRotScaleTrans); RandomFlip3D flips both axes
    # with probability 0.5 (random.choice([0, 1])).
    assert tuple(bev['scale_range']) == (0.9, 1.1)
    assert tuple(bev['rot_range']) == pytest.approx((-math.pi / 4, math.pi / 4), abs=1e-8)
    assert tuple(bev['trans_std']) == (0.5, 0.5, 0.5)
    assert bev.get('flip_ratio_x', 0.5) == 0.5 and bev.get('flip_ratio_y', 0.5) == 0.5
    # default.yaml train_pipeline: PointShuffle after the range filters.
    types = [t['type'] for t in base_dataset(cfg.train_dataloader.dataset).pipeline]
    assert types.index('mmdet3d.PointShuffle') > types.index('PointsRangeFilter')
    assert 'mmdet3d.PointShuffle' not in [t['type'] for t in cfg.test_dataloader.dataset.pipeline]


def test_inputs_are_bevfusions(cfg):
    # det/transfusion/secfpn/camera+lidar/swint_v0p075/default.yaml: voxel_size [0.075, 0.075, 0.2],
    # point_cloud_range [-54, -54, -5, 54, 54, 3]; default.yaml LoadPointsFromMultiSweeps sweeps_num 9.
    assert list(cfg.geometry.voxel_size) == [0.075, 0.075, 0.2]
    assert list(cfg.geometry.point_cloud_range) == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    assert _step('LoadMultiSweepPoints', cfg)['sweeps'] == 9
    # default.yaml LoadPointsFromMultiSweeps: pad_empty_sweeps true, remove_close true (loading.py
    # _remove_close: radius 1.0, |x| < r and |y| < r), no test_mode (a random 9 of the info's 10 sweeps
    # in training; FULLER's test pipeline takes the nearest 9, docs/nuscenes.md).
    for pipeline in ('train_pipeline', 'test_pipeline'):
        sweeps = _step('LoadMultiSweepPoints', cfg, pipeline)
        assert sweeps['pad_empty_sweeps'] and sweeps['close_region'] == 'square'
        assert sweeps.get('remove_close', 1.0) == 1.0 and sweeps['sweeps'] == 9
    assert _step('LoadMultiSweepPoints', cfg)['test_mode'] is False
    assert _step('LoadMultiSweepPoints', cfg, 'test_pipeline').get('test_mode', True) is True
    # default.yaml LoadBEVSegmentation xbound/ybound [-50.0, 50.0, 0.5].
    assert cfg.geometry.map_bound == dict(xbound=(-50.0, 50.0, 0.5), ybound=(-50.0, 50.0, 0.5))
    # default.yaml map_classes: drivable_area (its '# - drivable_area*' left out); loading.py
    # LoadBEVSegmentation draws a class from the map layer of its name, except 'drivable_area*'
    # (road_segment + lane) and 'divider' (road_divider + lane_divider).
    from fuller.datasets import NuScenesMultiTaskDataset
    layers = {**NuScenesMultiTaskDataset.METAINFO['map_layers'], **cfg.get('metainfo', {}).get('map_layers', {})}
    assert layers['drivable_area'] == ('drivable_area',) and layers['divider'] == ('road_divider', 'lane_divider')
    assert all(layers[c] == (c,) for c in ('ped_crossing', 'walkway', 'stop_line', 'carpark_area'))
    # default.yaml data.samples_per_gpu 4 (8 GPUs: 32, the schedule's base batch).
    assert cfg.train_dataloader.batch_size == 4 and cfg.auto_scale_lr.base_batch_size == 32
    # mmdet3d/models/vtransforms/base.py BaseTransform.bev_pool: ((geom - (bx - dx / 2)) / dx).long(),
    # truncation toward zero; default.yaml model.encoders.camera.vtransform dbound [1.0, 60.0, 0.5].
    vt = cfg.model.encoders.camera.vtransform
    assert vt.cell_index == 'trunc' and tuple(vt.dbound) == (1.0, 60.0, 0.5)


def test_point_shuffle_resolves_and_shuffles():
    """The pipeline's 'mmdet3d.PointShuffle' builds from FULLER's registry and permutes the points."""
    from mmdet3d.structures import LiDARPoints
    from mmengine.registry import init_default_scope

    from fuller.registry import TRANSFORMS

    init_default_scope('fuller')
    shuffle = TRANSFORMS.build(dict(type='mmdet3d.PointShuffle'))
    torch.manual_seed(0)
    pts = torch.arange(400, dtype=torch.float32).view(100, 4)
    out = shuffle({'points': LiDARPoints(pts.clone(), points_dim=4)})['points'].tensor
    assert not torch.equal(out, pts) and torch.equal(out[out[:, 0].argsort()], pts)


STAGE1 = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_l_voxel0075_8x4-20e_nuscenes.py')
STAGE2 = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_lc_swint_8x4-6e_nuscenes-staged.py')
MAP_STAGED = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-map_lc_swint_8x4-20e_nuscenes-staged.py')
CAMERA_CONFIGS = [STAGE2, MAP_STAGED, *NUSCENES, *(osp.join(REPO_ROOT, 'configs', 'bevfusion', n) for n in (
    'bevfusion-det_lc_swint_8x4-6e_nuscenes.py', 'bevfusion-map_lc_swint_8x4-20e_nuscenes.py'))]


def test_lidar_only_stage_is_bevfusions():
    """Stage 1: configs/nuscenes/det/transfusion/secfpn/lidar/voxelnet_0p075.yaml with lidar/default.yaml."""
    cfg = read_config(STAGE1)
    # lidar/default.yaml: model.encoders.camera null; det/default.yaml: model.fuser null, heads.map null
    assert cfg.model.encoders.camera is None and cfg.model.fuser is None and cfg.model.heads.map is None
    assert cfg.model.heads.det.type == 'TransFusionHead'
    assert cfg.optim_wrapper.amp == 'float16' and cfg.optim_wrapper.growth_interval == 2000  # default.yaml fp16
    # voxelnet_0p075.yaml: voxel_size [0.075, 0.075, 0.2], point_cloud_range +-54 / -5..3, max_num_points 10,
    # max_voxels [120000, 160000], SparseEncoder in_channels 5, output_channels 128, basicblock
    assert list(cfg.geometry.voxel_size) == [0.075, 0.075, 0.2]
    assert list(cfg.geometry.point_cloud_range) == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    lidar = cfg.model.encoders.lidar
    assert lidar.voxelize.max_num_points == 10 and tuple(lidar.voxelize.max_voxels) == (120000, 160000)
    assert lidar.backbone.in_channels == 5 and lidar.backbone.output_channels == 128
    assert lidar.backbone.block_type == 'basicblock'
    # default.yaml: data.train.type CBGSDataset, use_valid_flag true; samples_per_gpu 4
    # (FULLER's CBGSDataset: mmdet3d's class, which BEVFusion uses, with a clear error for an absent class)
    from mmdet3d.datasets import CBGSDataset as MMDet3DCBGS

    from fuller.registry import DATASETS
    assert cfg.train_dataloader.dataset.type == 'CBGSDataset' and cfg.train_dataloader.batch_size == 4
    assert issubclass(DATASETS.get('CBGSDataset'), MMDet3DCBGS)
    assert base_dataset(cfg.train_dataloader.dataset).use_valid_flag
    # lidar/default.yaml: gt_paste_stop_epoch 15; default.yaml train_pipeline ObjectPaste.db_sampler
    paste = _step('ObjectPaste', cfg)
    assert paste['stop_epoch'] == 15
    db = paste['db_sampler']
    # info_path: dataset_root + "nuscenes_dbinfos_train.pkl"; rate 1.0
    assert db['info_path'] == 'nuscenes_dbinfos_train.pkl' and db['rate'] == 1.0
    assert db['prepare'] == dict(filter_by_difficulty=[-1], filter_by_min_points={
        c: 5 for c in ('car', 'truck', 'bus', 'trailer', 'construction_vehicle', 'traffic_cone', 'barrier', 'motorcycle',
                       'bicycle', 'pedestrian')})
    assert db['sample_groups'] == dict(car=2, truck=3, construction_vehicle=7, bus=4, trailer=6, barrier=2, motorcycle=6,
                                       bicycle=6, pedestrian=2, traffic_cone=2)
    assert db['points_loader'] == dict(load_dim=5, use_dim=5)  # load_dim 5, use_dim 5
    types = [t['type'] for t in base_dataset(cfg.train_dataloader.dataset).pipeline]
    # default.yaml train_pipeline order: LoadAnnotations3D, ObjectPaste, (ImageAug3D,) GlobalRotScaleTrans, ...
    assert types.index('LoadAnnotations3D') + 1 == types.index('ObjectPaste') < types.index('BEVAugmentation')
    assert 'LoadMultiViewImages' not in types and _step('LoadMultiSweepPoints', cfg)['sweeps'] == 9
    bev = _step('BEVAugmentation', cfg)  # augment3d: scale [0.9, 1.1], rotate +-pi/4, translate 0.5
    assert tuple(bev['scale_range']) == (0.9, 1.1) and tuple(bev['trans_std']) == (0.5, 0.5, 0.5)
    assert types.index('mmdet3d.PointShuffle') > types.index('PointsRangeFilter')
    # secfpn/default.yaml: AdamW lr 1e-4, weight_decay 0.01, grad_clip 35; lr_config / momentum_config
    # cyclic; default.yaml max_epochs 20
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay, tuple(opt.betas)) == ('AdamW', 1e-4, 0.01, (0.9, 0.999))
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2) and cfg.train_cfg.max_epochs == 20
    assert [s['type'] for s in cfg.param_scheduler] == ['CosineAnnealingLR'] * 2 + ['CosineAnnealingMomentum'] * 2


@pytest.mark.parametrize('path', CAMERA_CONFIGS, ids=osp.basename)
def test_camera_configs_do_not_paste(path):
    """default.yaml: gt_paste_stop_epoch -1 (ObjectPaste never pastes): BEVFusion pastes only in its
    LiDAR-only stage, as pasted objects are not in the images."""
    cfg = read_config(path)
    assert 'ObjectPaste' not in [t['type'] for t in base_dataset(cfg.train_dataloader.dataset).pipeline]


def test_staged_configs_start_where_bevfusion_does():
    # camera+lidar/swint_v0p075/default.yaml and seg/fusion-bev256d2-lss.yaml: encoders.camera.backbone.init_cfg
    # {type: Pretrained, checkpoint: pretrained/swint-nuimages-pretrained.pth}
    for path in (STAGE2, MAP_STAGED):
        cfg = read_config(path)
        assert cfg.model.encoders.camera.backbone.init_cfg == dict(
            type='Pretrained', checkpoint='pretrained/swint-nuimages-pretrained.pth')
    cfg = read_config(STAGE2)
    # stage 2 loads stage 1's last checkpoint (20 epochs), partially: its camera branch and fuser are new
    assert cfg.load_from == 'work_dirs/bevfusion-det_l_voxel0075_8x4-20e_nuscenes/epoch_20.pth' and cfg.load_partial
    assert cfg.train_cfg.max_epochs == 6 and cfg.optim_wrapper.optimizer.lr == 2e-4


@pytest.mark.slow
def test_stage_one_checkpoint_loads_into_stage_two_whole():
    """Every tensor of the LiDAR-only model has its place, of its shape, in the camera+LiDAR model, so
    --load-partial takes the LiDAR branch, the decoder and the head whole and leaves the camera branch
    and the fuser as initialised (nothing is dropped, no part is a fragment)."""
    from mmengine.registry import init_default_scope

    from fuller.engine.checkpoint_io import match_state_dict
    from fuller.registry import MODELS

    init_default_scope('fuller')
    one = MODELS.build(read_config(STAGE1).model)
    cfg2 = read_config(STAGE2)
    cfg2.model.encoders.camera.backbone.init_cfg = None  # building only: the weights file is not needed
    two = MODELS.build(cfg2.model)
    report = match_state_dict(two, one.state_dict())
    assert not report.unexpected and not report.mismatched and not report.fragments
    whole = {u for u, (n, fit) in report.units.items() if fit == n}
    lidar = {u for u in report.units if u.startswith('encoders.lidar')}
    assert lidar and lidar | {'decoder.backbone', 'decoder.neck', 'heads.det'} <= whole
    assert all(k.startswith(('encoders.camera', 'fuser')) for k in report.missing) and report.missing
