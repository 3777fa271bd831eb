"""DepthLSSViewTransform, BEVFusion's depth-guided view transform: BEVFusion-MIT's parameters,
the LiDAR depth image in the frame of the lifted frustum, and that the depth reaches the output.

BEVFusion-MIT: ``mmdet3d/models/vtransforms/depth_lss.py`` (``DepthLSSTransform``: ``dtransform``,
``depthnet``, ``downsample``) and ``base.py`` (``BaseDepthTransform.forward``: the depth image).
"""

import math

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

import fuller.models  # noqa: F401
from fuller.models.camera import CameraRig
from fuller.registry import MODELS
from fuller.testing import REPO_ROOT, tiny_config


def _vt(**kw):
    init_default_scope('fuller')
    cfg = dict(type='DepthLSSViewTransform', in_channels=16, out_channels=8, image_size=(64, 96),
               feature_size=(8, 12), xbound=(-20.0, 20.0, 0.8), ybound=(-20.0, 20.0, 0.8), zbound=(-10.0, 10.0, 20.0),
               dbound=(1.0, 41.0, 1.0), downsample=2)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_state_dict_is_bevfusion_mits():
    """BEVFusion's nuScenes DepthLSS (in 256, out 80, dbound [1, 60, 0.5]: 118 bins, downsample 2):
    every tensor by name and shape. BEVFusion also stores frustum/dx/bx/nx as parameters, which
    FULLER derives (they are not state here)."""
    vt = _vt(in_channels=256, out_channels=80, image_size=(256, 704), feature_size=(32, 88),
             xbound=(-54.0, 54.0, 0.3), ybound=(-54.0, 54.0, 0.3), dbound=(1.0, 60.0, 0.5))
    bn = lambda p, n: {f'{p}.weight': (n,), f'{p}.bias': (n,), f'{p}.running_mean': (n,),  # noqa: E731
                       f'{p}.running_var': (n,), f'{p}.num_batches_tracked': ()}
    want = {'dtransform.0.weight': (8, 1, 1, 1), 'dtransform.0.bias': (8,), **bn('dtransform.1', 8),
            'dtransform.3.weight': (32, 8, 5, 5), 'dtransform.3.bias': (32,), **bn('dtransform.4', 32),
            'dtransform.6.weight': (64, 32, 5, 5), 'dtransform.6.bias': (64,), **bn('dtransform.7', 64),
            'depthnet.0.weight': (256, 320, 3, 3), 'depthnet.0.bias': (256,), **bn('depthnet.1', 256),
            'depthnet.3.weight': (256, 256, 3, 3), 'depthnet.3.bias': (256,), **bn('depthnet.4', 256),
            'depthnet.6.weight': (118 + 80, 256, 1, 1), 'depthnet.6.bias': (198,)}
    for i in (0, 3, 6):
        want[f'downsample.{i}.weight'] = (80, 80, 3, 3)
        want.update(bn(f'downsample.{i + 1}', 80))
    assert {k: tuple(v.shape) for k, v in vt.state_dict().items()} == want


def _rig(img_aug: np.ndarray, lidar_aug: np.ndarray) -> CameraRig:
    """One camera looking along LiDAR +x (camera z = LiDAR x, camera x = -LiDAR y, camera y = -LiDAR z),
    focal 50 px, principal point (96, 64) of a 192 x 128 original image."""
    cam2img = np.eye(4, dtype=np.float32)
    cam2img[:3, :3] = [[50, 0, 96], [0, 50, 64], [0, 0, 1]]
    lidar2cam = np.eye(4, dtype=np.float32)
    lidar2cam[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    t = lambda a: torch.tensor(np.asarray(a, np.float32))[None]  # noqa: E731
    return CameraRig(t(cam2img)[:, None], t(lidar2cam)[:, None], t(img_aug)[:, None], t(lidar_aug))


def test_depth_image_by_hand():
    """A point 10 m ahead, 1 m left and 0.5 m up projects to original pixel (91, 61.5); resized by
    0.5 and shifted by (-0.2, -0.5) that is (45.3, 30.25): the depth image holds 10 at row 30,
    column 45. The point is given in the augmented LiDAR frame (rotated 30 deg, scaled 1.1), which
    the transform undoes first; a point behind the camera and one off the image leave nothing."""
    vt = _vt()
    img_aug = np.eye(4)
    img_aug[:2, :2] *= 0.5
    img_aug[:2, 3] = (-0.2, -0.5)
    a = math.radians(30)
    lidar_aug = np.eye(4)
    lidar_aug[:3, :3] = 1.1 * np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    lidar_aug[:3, 3] = (0.3, -0.2, 0.1)
    cams = _rig(img_aug, lidar_aug)
    orig = torch.tensor([[10.0, 1.0, 0.5], [-10.0, 1.0, 0.5], [10.0, 30.0, 0.5]])
    aug = orig @ torch.tensor(lidar_aug[:3, :3], dtype=torch.float32).T + torch.tensor(lidar_aug[:3, 3],
                                                                                        dtype=torch.float32)
    pts = torch.cat([aug, torch.zeros(3, 2)], 1)
    depth = vt.depth_image([pts], cams)
    assert depth.shape == (1, 1, 1, 64, 96)
    nz = depth[0, 0, 0].nonzero().tolist()
    assert nz == [[30, 45]] and torch.isclose(depth[0, 0, 0, 30, 45], torch.tensor(10.0), atol=1e-4)
    assert not vt.depth_image(None, cams).any()


def test_depth_pixels_unproject_onto_their_points(demo_root):
    """On a demo sample with its real augmentation (resize, crop, flip, BEV rotation/scale): the
    frustum geometry of the LSS lift, evaluated at each non-empty depth pixel with its depth,
    lands within a pixel's footprint of a LiDAR point: the depth image and the lifted frustum
    share one frame."""
    from mmengine.dataset import pseudo_collate

    from fuller.registry import DATASETS

    cfg = tiny_config(demo_root, '/tmp/unused', config=f'{REPO_ROOT}/configs/fuller/'
                      'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
    init_default_scope('fuller')
    torch.manual_seed(3)
    np.random.seed(3)
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    sample = data['data_samples'][0]
    h, w = cfg.geometry.image_size
    vt = _vt(image_size=(h, w), feature_size=(h // 8, w // 8))
    cams = CameraRig.from_metainfo([sample.metainfo])
    pts = data['inputs']['points'][0].float()
    depth = vt.depth_image([pts], cams)[0, :, 0]  # [N, H, W]
    cam_ix, v, u = depth.nonzero(as_tuple=True)
    assert len(u) > 500
    d = depth[cam_ix, v, u]
    # LSS's geometry for one (u + 0.5, v + 0.5, d) per pixel: the frustum_points formula
    uv1 = torch.stack([u + 0.5, v + 0.5, torch.zeros_like(d), torch.ones_like(d)], -1)
    orig = torch.einsum('nij,nj->ni', torch.linalg.inv(cams.img_aug[0, cam_ix]), uv1)
    hom = torch.stack([orig[:, 0] * d, orig[:, 1] * d, d, torch.ones_like(d)], -1)
    back = torch.einsum('nij,nj->ni', cams.frustum_to_lidar()[0, cam_ix], hom)[:, :3]
    near = torch.cdist(back, pts[:, :3]).min(1).values
    focal = cams.cam2img[0, cam_ix, 0, 0] * cams.img_aug[0, cam_ix, :2, :2].det().abs().sqrt()
    assert (near <= 1.5 * d / focal + 1e-3).float().mean() > 0.99


def test_depth_reaches_the_bev_and_its_convs_learn():
    """The output depends on the points (the depth image is an input of the depth net), and the
    depth convs get gradients."""
    vt = _vt()
    cams = _rig(np.eye(4), np.eye(4))
    feats = torch.randn(1, 1, 16, 8, 12)
    pts = torch.cat([torch.rand(400, 1) * 20 + 2, (torch.rand(400, 2) - 0.5) * 6, torch.zeros(400, 2)], 1)
    out = vt(feats, cams, [pts])
    assert out.shape == (1, 8, 25, 25)
    assert not torch.allclose(out, vt(feats, cams, None))
    out.sum().backward()
    assert vt.dtransform[0].weight.grad.abs().sum() > 0


def test_feature_stride_must_be_8():
    with pytest.raises(ValueError, match='feature stride 8'):
        _vt(feature_size=(16, 24))



def test_demo_model_with_depth_lss_trains_and_predicts_without_lidar(demo_root, tmp_path):
    """One line over the demo config swaps in DepthLSS: FullerNet hands the camera branch the
    points; a calibrated step trains, and inference with the LiDAR dropped runs on an empty
    depth image."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper

    from fuller.engine import apply_variant
    from fuller.registry import DATASETS

    fork = tmp_path / 'fork.py'
    fork.write_text(f"_base_ = ['{REPO_ROOT}/configs/fuller/naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py']\n"
                    "model = dict(encoders=dict(camera=dict(vtransform=dict(type='DepthLSSViewTransform'))))\n")
    path = tmp_path / 'fuller.py'
    apply_variant(str(fork), f'{REPO_ROOT}/configs/ablation/fuller.py').dump(str(path))
    cfg = tiny_config(demo_root, str(tmp_path), config=str(path))
    init_default_scope('fuller')
    model = MODELS.build(cfg.model)
    model.init_weights()
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    before = model.encoders['camera'].vtransform.dtransform[3].weight.detach().clone()
    log = model.train_step(data, build_optim_wrapper(model, cfg.optim_wrapper))
    assert all(float(v) == float(v) for v in log.values())
    assert not torch.equal(model.encoders['camera'].vtransform.dtransform[3].weight, before)  # the depth convs learn
    model.eval()
    model.drop_modality = 'lidar'
    model.missing_modality = 'zeros'
    with torch.no_grad():
        out = model.test_step(pseudo_collate([DATASETS.build(cfg.test_dataloader.dataset)[0]]))
    assert len(out) == 1 and 'pred_instances_3d' in out[0]


# ---------------------------------------------------------------------------- depth supervision
def _lss(**kw):
    init_default_scope('fuller')
    cfg = dict(type='LSSViewTransform', in_channels=16, out_channels=8, image_size=(64, 96), feature_size=(8, 12),
               xbound=(-20.0, 20.0, 0.8), ybound=(-20.0, 20.0, 0.8), zbound=(-10.0, 10.0, 20.0),
               dbound=(1.0, 41.0, 1.0), downsample=2, depth_loss_weight=3.0)
    cfg.update(kw)
    return MODELS.build(cfg)


def _points(xyz, lag=None):
    xyz = torch.tensor(xyz, dtype=torch.float32)
    lag = torch.zeros(len(xyz)) if lag is None else torch.tensor(lag, dtype=torch.float32)
    return torch.cat([xyz, torch.zeros(len(xyz), 1), lag[:, None]], 1)


def test_depth_targets_by_hand():
    """BEVDepth's downsampled ground truth (``get_downsampled_gt_depth``): the nearest keyframe
    return in each 8 x 8 pixel cell, binned by dbound (1 m bins from 1 m). With no augmentation, a
    point at LiDAR (x, y, z) lands at original pixel (96 - 50 y / x, 64 - 50 z / x), which is the
    network pixel (the 64 x 96 network image is the top-left of the 192 x 128 original here).
    (10, 1, 0.5) -> pixel (91, 61.5): cell (7, 11), bin 9; (20.6, 2, 1) -> pixel (91.1, 61.6), the
    same cell, farther: the nearer wins. (30.2, 0, 10) -> pixel (96, 47.4) is outside the 96-wide
    image. (5.5, 0.5, 0.4) -> pixel (91.5, 60.4): cell (7, 11) again, but its time lag is 0.1 s (an
    older sweep) and is ignored. (4.5, 0.6, 1.9) -> pixel (89.3, 42.9): cell (5, 11), bin 3.
    (50, 1, 0.5) -> (95, 63.5): cell (7, 11)... covered above; (45.5, 2.5, 3) -> (93.3, 60.7), bin
    44 > 39: outside dbound, so none."""
    vt = _lss()
    cams = _rig(np.eye(4), np.eye(4))
    pts = _points([[10.0, 1.0, 0.5], [20.6, 2.0, 1.0], [30.2, 0.0, 10.0], [5.5, 0.5, 0.4], [4.5, 0.6, 1.9]],
                  lag=[0, 0, 0, 0.1, 0])
    t = vt.depth_targets([pts], cams)
    assert t.shape == (1, 8, 12)
    assert t[0, 7, 11] == 9 and t[0, 5, 11] == 3
    assert (t >= 0).sum() == 2
    far = vt.depth_targets([_points([[45.5, 2.5, 3.0]])], cams)
    assert (far < 0).all()


def test_depth_loss_is_bevdepths_bce():
    """The loss is BEVDepth's ``get_depth_loss``: BCE of the softmax against the one-hot bin,
    summed over bins, averaged over cells with a target; computed by hand here for one cell. It
    reaches the depth logits only (its gradient w.r.t. the context channels is zero)."""
    vt = _lss()
    cams = _rig(np.eye(4), np.eye(4))
    pts = _points([[10.0, 1.0, 0.5]])
    torch.manual_seed(0)
    logits = torch.randn(1, vt.num_depth, 8, 12, requires_grad=True)
    loss = vt.depth_loss(logits, cams, [pts])
    p = logits[0, :, 7, 11].softmax(0)
    y = torch.zeros(vt.num_depth)
    y[9] = 1
    want = -(y * p.log() + (1 - y) * (1 - p).log()).sum()
    assert torch.isclose(loss, want, rtol=1e-5)
    loss.backward()
    assert logits.grad[0, :, 7, 11].abs().sum() > 0
    assert logits.grad.abs().sum() == logits.grad[0, :, 7, 11].abs().sum()
    # no target anywhere: zero, in the graph
    none = vt.depth_loss(logits, cams, [_points([[-10.0, 1.0, 0.5]])])
    assert none.item() == 0 and none.requires_grad


@pytest.mark.parametrize('kind', ['LSSViewTransform', 'DepthLSSViewTransform'])
def test_depth_loss_only_in_training_with_points_and_a_weight(kind):
    vt = _lss(type=kind, feature_size=(8, 12))
    cams = _rig(np.eye(4), np.eye(4))
    feats = torch.randn(1, 1, 16, 8, 12)
    pts = [_points([[10.0, 1.0, 0.5]])]
    aux = {}
    vt.train()
    vt(feats, cams, pts, aux)
    assert set(aux) == {'loss_depth'}
    want = 3.0 * vt.depth_loss(vt.depthnet(torch.cat([vt.dtransform(vt.depth_image(pts, cams).flatten(0, 1)),
                                                        feats.flatten(0, 1)], 1))[:, :vt.num_depth]
                               if kind == 'DepthLSSViewTransform' else vt.depthnet(feats.flatten(0, 1))[:, :vt.num_depth],
                               cams, pts)
    assert torch.isclose(aux['loss_depth'], want)
    for training, points in ((False, pts), (True, None)):
        aux = {}
        vt.train(training)(feats, cams, points, aux)
        assert aux == {}
    off = _lss(type=kind, depth_loss_weight=0.0).train()
    aux = {}
    off(feats, cams, pts, aux)
    assert aux == {}
    with pytest.raises(ValueError, match='depth_loss_weight'):
        _lss(depth_loss_weight=-1.0)


@pytest.mark.parametrize('kind', ['LSSViewTransform', 'DepthLSSViewTransform'])
def test_lift_and_pool_run_in_fp32_under_autocast(kind):
    """BEVFusion-MIT's view transforms under mixed precision: ``@force_fp32()`` on
    ``BaseTransform.forward``, ``BaseDepthTransform.forward`` and ``bev_pool``
    (``mmdet3d/models/vtransforms/base.py``) and on ``get_cam_feats`` (``lss.py``,
    ``depth_lss.py``), whose ``forward`` calls ``self.downsample`` after ``super().forward``, outside
    it. mmcv's ``force_fp32`` casts half inputs to fp32 and turns autocast off once fp16 is
    enabled. So under autocast the depth image's convs, the depth net and the pooled grid are fp32,
    the downsample convs autocast, and the pooled grid equals the fp32 transform's of the same
    (rounded) image features to the bit."""
    torch.manual_seed(0)
    vt = _vt(type=kind).train()
    cams = _rig(np.eye(4), np.eye(4))
    feats = torch.randn(1, 1, 16, 8, 12).bfloat16()  # as an autocast neck gives them
    xyz = torch.rand(2000, 3) * torch.tensor([30.0, 20.0, 2.0]) + torch.tensor([2.0, -10.0, -1.0])
    pts = torch.cat([xyz, torch.zeros(2000, 2)], 1)
    seen, pooled = {}, []
    mods = {'depthnet': vt.depthnet, 'downsample.0': vt.downsample[0]}
    if kind == 'DepthLSSViewTransform':
        mods['dtransform'] = vt.dtransform
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, (i[0].dtype, o.dtype)))
             for k, m in mods.items()]
    hooks.append(vt.downsample.register_forward_pre_hook(lambda m, a: pooled.append(a[0].detach().clone())))
    try:
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = vt(feats, cams, [pts])
        assert seen['depthnet'] == (torch.float32, torch.float32)
        if kind == 'DepthLSSViewTransform':
            assert seen['dtransform'] == (torch.float32, torch.float32)
        assert seen['downsample.0'] == (torch.float32, torch.bfloat16)  # the pooled grid in, autocast out
        assert out.dtype == torch.bfloat16
        vt(feats.float(), cams, [pts])  # fp32, no autocast
    finally:
        for h in hooks:
            h.remove()
    assert pooled[0].dtype == torch.float32 and pooled[0].abs().sum() > 0
    assert torch.equal(pooled[0], pooled[1])
