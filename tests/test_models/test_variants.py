"""Every config loads; model variants (modalities, tasks, heads) come from config alone."""

import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from fuller.datasets.metainfo import CLASSES
from fuller.engine import apply_variant, read_config
from fuller.testing import REPO_ROOT, tiny_config

CONFIGS = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', 'fuller', '*.py')))
VARIANTS = sorted(v for v in glob.glob(osp.join(REPO_ROOT, 'configs', 'ablation', '*.py'))
                  if not osp.basename(v).startswith('_'))
DEMO_NAIVE = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
DEMO_FULLER = osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
NUS_NAIVE = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_swint_8x4-20e_nuscenes-det-map.py')


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, osp.join(REPO_ROOT, 'configs')))
def test_config_loads(path):
    cfg = read_config(path)
    assert cfg.model.type == 'FullerNet'
    assert cfg.optim_wrapper.type in ('GuardedOptimWrapper', 'CalibratedOptimWrapper')
    assert cfg.model.geometry == cfg.geometry and cfg.model.metainfo['classes'] == list(CLASSES)
    if cfg.train_cfg.type == 'IterBasedTrainLoop':  # a forked schedule ends where training ends
        last = cfg.param_scheduler[-1]
        assert last.end == cfg.train_cfg.max_iters and last.begin + last.T_max == last.end


@pytest.mark.parametrize('base', [DEMO_NAIVE, DEMO_FULLER, NUS_NAIVE], ids=['demo-naive', 'demo-fuller', 'nus'])
@pytest.mark.parametrize('variant', VARIANTS, ids=lambda p: osp.basename(p)[:-3])
def test_every_variant_applies_to_every_base(base, variant):
    """One set of variants: each keeps the base's optimizer and schedule (no _delete_ of them)."""
    base_cfg = Config.fromfile(base)
    cfg = apply_variant(base, variant)
    assert cfg.optim_wrapper.type == 'CalibratedOptimWrapper'
    assert cfg.optim_wrapper.optimizer == base_cfg.optim_wrapper.optimizer
    assert cfg.param_scheduler == base_cfg.param_scheduler and cfg.train_cfg == base_cfg.train_cfg
    assert '_delete_' not in str(cfg.to_dict())
    if osp.basename(variant) == 'naive.py':  # the rule dicts replace the base's (FullerInter's args do not stay)
        assert cfg.optim_wrapper.inter == dict(type='Sum')


def test_optimizer_swap_fragment_over_a_variant():
    """``--with configs/ablation/optimizers/sgd.py``: SGD replaces AdamW (no AdamW argument stays),
    the schedule and clipping of the base stay."""
    sgd = osp.join(REPO_ROOT, 'configs', 'ablation', 'optimizers', 'sgd.py')
    cfg = apply_variant(DEMO_NAIVE, osp.join(REPO_ROOT, 'configs', 'ablation', 'fuller.py'), sgd)
    base = Config.fromfile(DEMO_NAIVE)
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4)
    assert cfg.optim_wrapper.inter.type == 'FullerInter' and cfg.optim_wrapper.clip_grad == base.optim_wrapper.clip_grad
    assert cfg.param_scheduler == base.param_scheduler


def test_schedule_fragment_over_a_variant():
    """``--with configs/ablation/schedules/demo-450it.py``: the study's shorter schedule replaces the
    base's whole (warm-up, then a cosine that ends where training ends); the optimizer stays."""
    short = osp.join(REPO_ROOT, 'configs', 'ablation', 'schedules', 'demo-450it.py')
    base = Config.fromfile(DEMO_NAIVE)
    for variant in ('fuller.py', 'det_only.py'):
        cfg = apply_variant(DEMO_NAIVE, osp.join(REPO_ROOT, 'configs', 'ablation', variant), short)
        warm, cosine = cfg.param_scheduler
        assert (warm.type, warm.end, cosine.begin) == ('LinearLR', 30, 30)
        assert cfg.train_cfg.max_iters == cosine.end == cosine.begin + cosine.T_max == 450
        assert cfg.train_cfg.type == base.train_cfg.type and cfg.optim_wrapper.optimizer == base.optim_wrapper.optimizer


def test_camera_pretrained_fragment_over_a_variant():
    """``--with configs/ablation/init/demo-camera-pretrained.py``: the camera backbone and neck
    start from the demo pretraining file (with the prefixes its tool writes), the rest of their
    configs stays; over LiDAR-only there is no camera and no file is named."""
    from fuller.engine import pretrained_files

    frag = osp.join(REPO_ROOT, 'configs', 'ablation', 'init', 'demo-camera-pretrained.py')
    base = Config.fromfile(DEMO_NAIVE)
    cfg = apply_variant(DEMO_NAIVE, osp.join(REPO_ROOT, 'configs', 'ablation', 'fuller.py'), frag)
    cam = cfg.model.encoders.camera
    assert cam.backbone.init_cfg == dict(type='Pretrained', checkpoint='pretrained/demo-camera_r18-tiny_seg.pth',
                                         prefix='backbone.')
    assert cam.neck.init_cfg.prefix == 'neck.'
    assert {k: v for k, v in cam.backbone.items() if k != 'init_cfg'} == base.model.encoders.camera.backbone
    assert pretrained_files(cfg.model) == ['pretrained/demo-camera_r18-tiny_seg.pth']
    lidar = apply_variant(DEMO_NAIVE, osp.join(REPO_ROOT, 'configs', 'ablation', 'lidar_only.py'), frag)
    assert not lidar.model.encoders.get('camera') and pretrained_files(lidar.model) == []


def test_nuscenes_models_build_with_matching_grids():
    import fuller.models  # noqa: F401
    from fuller.registry import MODELS

    init_default_scope('fuller')
    full = MODELS.build(read_config(osp.join(REPO_ROOT, 'configs', 'fuller',
                                             'fuller_lc_swint_8x4-20e_nuscenes-det-map.py')).model)
    lite = MODELS.build(read_config(osp.join(REPO_ROOT, 'configs', 'fuller',
                                             'fuller-lite_lc_swint_8x4-20e_nuscenes-det-map.py')).model)
    # 1440 voxels / 8 = 360 LSS cells / 2 = 180: the grid both heads expect.
    for m in (full, lite):
        for head in m.heads.values():
            assert tuple(head.expected_input_shape()[0]) == (180, 180)
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert n(lite.heads) < 0.1 * n(full.heads)
    assert n(lite.encoders) == n(full.encoders)


@pytest.mark.parametrize('override,heads,encoders', [
    ('model = dict(encoders=dict(lidar=None))', {'det', 'map'}, {'camera'}),
    ('model = dict(encoders=dict(camera=None))', {'det', 'map'}, {'lidar'}),
    ('model = dict(heads=dict(map=None))', {'det'}, {'camera', 'lidar'}),
    ('model = dict(heads=dict(det=None))', {'map'}, {'camera', 'lidar'}),
    ('model = dict(encoders=dict(lidar=None), heads=dict(det=None))', {'map'}, {'camera'}),
], ids=['camera_only', 'lidar_only', 'det_only', 'map_only', 'camera_map_only'])
def test_one_line_fork_of_fuller_trains_one_calibrated_step(demo_root, tmp_path, override, heads, encoders):
    """A single-modality or single-task variant is one line over the FULLER config: the fuser
    goes, and the decoder and heads take their input channels from what is left."""
    from mmengine.optim import build_optim_wrapper

    from fuller.registry import DATASETS, MODELS

    fork = tmp_path / 'fork.py'
    fork.write_text(f"_base_ = ['{DEMO_FULLER}']\n{override}\n")
    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path), config=str(fork))
    model = MODELS.build(cfg.model)
    assert set(model.heads) == heads and set(model.encoders) == encoders
    assert (model.fuser is None) == (len(encoders) == 1)
    if len(encoders) == 1:
        enc = next(iter(model.encoders.values()))
        assert model.decoder['backbone'].blocks[0][0].in_channels == enc.out_channels
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    log = model.train_step(data, ow)
    assert {k.split('.')[0] for k in log if '.loss' in k} == heads
    assert all(float(v) == float(v) for v in log.values())  # no NaN


def test_per_task_modality_calibration_trains_the_demo_model(demo_root, tmp_path):
    """The per-task intra variant on the real demo model: its statistics are logged, and where
    the two tasks reach the branches in the same camera/LiDAR ratio (as at initialisation:
    0.58 vs 0.57) it gives the scalar calibration's gradients; it differs only when the tasks'
    ratios differ (tests/test_calibration/test_intra.py checks that case against a reference)."""
    from mmengine.optim import build_optim_wrapper

    from fuller.registry import DATASETS, MODELS

    init_default_scope('fuller')
    path = tmp_path / 'task_intra.py'
    apply_variant(DEMO_NAIVE, osp.join(REPO_ROOT, 'configs', 'ablation', 'fuller_task_intra.py')).dump(str(path))
    cfg = tiny_config(demo_root, str(tmp_path), config=str(path))
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    grads = {}
    for per_task in (True, False):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        ow_cfg = dict(cfg.optim_wrapper, intra=dict(type='ModalityCalibrator', target='mean', per_task=per_task))
        ow = build_optim_wrapper(model, ow_cfg)
        ow.step = lambda **kw: None  # keep the gradients: compare them, not the updated weights
        ow.zero_grad = lambda **kw: None
        log = model.train_step(data, ow)
        grads[per_task] = torch.cat([p.grad.flatten() for p in model.encoders['camera'].parameters()
                                     if p.grad is not None])
        if per_task:
            assert {'calib/direction_cos_cam', 'calib/cam_lidar_ratio_before_det',
                    'calib/cam_lidar_ratio_before_map'} <= set(log)
            ratios = log['calib/cam_lidar_ratio_before_det'] / log['calib/cam_lidar_ratio_before_map']
            assert abs(ratios - 1) < 0.05
    cos = torch.nn.functional.cosine_similarity(grads[True], grads[False], dim=0)
    assert float(cos) > 0.999
    assert float(grads[True].norm() / grads[False].norm()) == pytest.approx(1.0, rel=0.05)


def test_modality_dropout_drops_one_sensor_per_sample_at_its_rate():
    """Each sample loses its camera map with probability p, else its LiDAR map with probability
    p, never both, unscaled; not at all in eval mode or at p = 0; bad p or a one-sensor model
    is refused."""
    from types import SimpleNamespace

    from fuller.models.detectors.fuller_net import FullerNet

    torch.manual_seed(0)
    cam, lidar = torch.ones(20000, 2, 1, 1), torch.full((20000, 3, 1, 1), 2.0)
    c, li = FullerNet._modality_dropout(SimpleNamespace(modality_dropout=0.25), cam, lidar)
    cam_gone, lidar_gone = c[:, 0, 0, 0] == 0, li[:, 0, 0, 0] == 0
    assert not (cam_gone & lidar_gone).any()
    assert abs(cam_gone.float().mean() - 0.25) < 0.015 and abs(lidar_gone.float().mean() - 0.25) < 0.015
    assert set(c.unique().tolist()) == {0.0, 1.0} and set(li.unique().tolist()) == {0.0, 2.0}  # unscaled
    assert (c[:, 1] == c[:, 0]).all()  # the whole map of a sample, every channel


@pytest.mark.parametrize('p,encoders', [(0.6, None), (-0.1, None), (0.2, 'camera_only')])
def test_modality_dropout_rejects_bad_settings(demo_root, tmp_path, p, encoders):
    from fuller.registry import MODELS

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path), config=DEMO_NAIVE)
    if encoders:
        cfg.model.encoders.lidar = None
    cfg.model.modality_dropout = p
    with pytest.raises(ValueError, match='model.modality_dropout'):
        MODELS.build(cfg.model)


def test_modality_dropout_variant_starves_the_dropped_branch(demo_root, tmp_path):
    """The study's modality-dropout variant on the demo model: in a step where the sample's camera
    map is dropped the camera branch gets no gradient and LiDAR's does, and the other way round."""
    from fuller.registry import DATASETS, MODELS

    init_default_scope('fuller')
    path = tmp_path / 'moddrop.py'
    apply_variant(DEMO_NAIVE, osp.join(REPO_ROOT, 'configs', 'ablation', 'modality_dropout.py')).dump(str(path))
    cfg = tiny_config(demo_root, str(tmp_path), config=str(path))
    assert cfg.model.modality_dropout == 0.25
    cfg.model.modality_dropout = 0.5  # every sample loses exactly one sensor
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    batch = model.data_preprocessor(data, True)
    seen = set()
    for _ in range(8):
        model.zero_grad()
        feats, bev = model.extract_feat(batch['inputs'], batch['data_samples'])
        losses = model.task_losses(feats, batch['data_samples'])
        sum(v for task in losses.values() for k, v in task.items() if 'loss' in k).backward()
        grads = {k: sum(float(p.grad.abs().sum()) for p in model.encoders[k].parameters() if p.grad is not None)
                 for k in ('camera', 'lidar')}
        assert (grads['camera'] == 0.0) != (grads['lidar'] == 0.0), grads
        seen.add('camera' if grads['camera'] == 0.0 else 'lidar')
        if seen == {'camera', 'lidar'}:
            break
    assert seen == {'camera', 'lidar'}
