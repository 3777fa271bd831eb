"""FullerNet end to end on one tiny sample: shapes, gradient flow, missing modality."""

import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from fuller.testing import tiny_config


@pytest.fixture(scope='module')
def setup(demo_root, tmp_path_factory):
    from fuller.registry import DATASETS, MODELS

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path_factory.mktemp('work')))
    cfg.test_dataloader.dataset.pipeline = cfg.val_dataloader.dataset.pipeline
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    test_data = pseudo_collate([DATASETS.build(cfg.test_dataloader.dataset)[0]])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model, data, test_data


def test_shapes_of_every_stage(setup):
    cfg, model, data, _ = setup
    model.train()
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    out = model(**batch, mode='tensor')
    g = cfg.geometry  # the BEV grid: the range in cells of voxel_size x bev_stride
    n = int(round((g.point_cloud_range[3] - g.point_cloud_range[0]) / (g.voxel_size[0] * g.bev_stride)))
    assert n == 64
    assert out['bev_camera'].shape == (1, cfg.model.encoders.camera.vtransform.out_channels, n, n)
    assert out['bev_lidar'].shape[-2:] == (n, n)
    assert out['shared'].shape[-2:] == (n, n)
    assert out['map_logits'].shape == (1, 6, 100, 100)


def test_every_branch_gets_gradient(setup):
    _, model, data, _ = setup
    model.train()
    model.zero_grad()
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    losses = model(**batch, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    # The ResNet initialises the last BN of every residual block to zero (mmdet's zero_init_residual):
    # at the first step the convs inside those blocks get no gradient, the zeroed BN weights do.
    zeroed = {n.rsplit('.', 2)[0] for n, p in model.named_parameters()
              if n.startswith('encoders.camera.backbone.layer') and n.endswith('bn2.weight') and not p.any()}
    assert zeroed
    for block in zeroed:
        assert model.get_parameter(f'{block}.bn2.weight').grad.any(), block
    # Otherwise only the FPN output convs of levels the view transform does not read.
    rest = [n for n in no_grad if n.rsplit('.', 2)[0] not in zeroed]
    assert all(n.startswith('encoders.camera.neck.fpn_convs.') and not n.startswith('encoders.camera.neck.fpn_convs.0')
               for n in rest), rest
    for prefix in ('encoders.camera.backbone', 'encoders.camera.vtransform', 'encoders.lidar', 'fuser', 'decoder',
                   'heads.det', 'heads.map'):
        assert any(n.startswith(prefix) and p.grad is not None and p.grad.any() for n, p in model.named_parameters())


def test_predict_outputs_and_missing_modality(setup):
    _, model, _, test_data = setup
    model.eval()
    batch = model.data_preprocessor(copy.deepcopy(test_data), False)
    with torch.no_grad():
        (sample,) = model(**batch, mode='predict')
    assert sample.pred_map.shape == (6, 100, 100) and 0 <= float(sample.pred_map.min()) <= 1
    assert sample.pred_instances_3d.bboxes_3d.tensor.shape[1] == 9
    no_imgs = {'inputs': {'points': batch['inputs']['points']}, 'data_samples': batch['data_samples']}
    with pytest.raises(KeyError, match="missing_modality='zeros'"):
        model(**no_imgs, mode='predict')
    model.missing_modality = 'zeros'
    try:
        with pytest.warns(UserWarning, match='camera input missing'), torch.no_grad():
            (sample,) = model(**no_imgs, mode='predict')
        assert torch.isfinite(sample.pred_map).all()
    finally:
        model.missing_modality = 'error'


@pytest.mark.parametrize('sensor, key', [('camera', 'imgs'), ('lidar', 'points')])
def test_drop_modality_zeros_that_sensors_map_and_skips_its_encoder(setup, sensor, key):
    """``drop_modality`` at inference: the sensor's encoder is not run and the model predicts
    exactly what it predicts with that input absent under ``missing_modality='zeros'``; with
    both inputs it differs. Training ignores it."""
    _, model, _, test_data = setup
    model.eval()
    batch = model.data_preprocessor(copy.deepcopy(test_data), False)
    calls = []
    handle = model.encoders[sensor].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            full = model(**batch, mode='tensor')
            model.drop_modality = sensor
            (dropped,) = model(**batch, mode='predict')
            dropped_t = model(**batch, mode='tensor')
            model.drop_modality, model.missing_modality = None, 'zeros'
            absent = {'inputs': {k: v for k, v in batch['inputs'].items() if k != key},
                      'data_samples': batch['data_samples']}
            with pytest.warns(UserWarning, match=f'{sensor} input missing'):
                (without,) = model(**absent, mode='predict')
    finally:
        handle.remove()
        model.drop_modality, model.missing_modality = None, 'error'
    assert len(calls) == 1  # the full pass only
    assert torch.equal(dropped.pred_map, without.pred_map)
    assert torch.equal(dropped.pred_instances_3d.scores_3d, without.pred_instances_3d.scores_3d)
    assert not dropped_t[f'bev_{sensor}'].any() and full[f'bev_{sensor}'].any()
    assert not torch.equal(dropped_t['shared'], full['shared'])


def test_drop_modality_needs_a_fused_model(setup):
    from fuller.registry import MODELS

    cfg = copy.deepcopy(setup[0])
    with pytest.raises(ValueError, match='drop_modality'):
        MODELS.build(dict(cfg.model, drop_modality='radar'))
    cfg.model.encoders.lidar = None
    cfg.model.fuser = None
    with pytest.raises(ValueError, match="encoders \\['camera'\\]"):
        MODELS.build(dict(cfg.model, drop_modality='lidar'))


def test_depth_supervision_is_an_auxiliary_loss_of_the_camera(setup):
    """With ``vtransform.depth_loss_weight`` the camera's depth loss joins the losses in training
    ('loss' mode: summed by the naive step; 'tasks' mode: TaskOutputs.aux, outside the tasks), on
    the sample's own LiDAR points, and trains the depth net; at inference there is none."""
    from fuller.registry import MODELS

    cfg, _, data, test_data = setup
    mcfg = copy.deepcopy(cfg.model)
    mcfg.encoders.camera.vtransform.depth_loss_weight = 3.0
    torch.manual_seed(0)
    model = MODELS.build(mcfg)
    model.init_weights()
    model.train()
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    losses = model(**batch, mode='loss')
    assert 'camera.loss_depth' in losses and losses['camera.loss_depth'] > 0
    out = model(**batch, mode='tasks')
    assert set(out.aux) == {'camera.loss_depth'} and set(out.losses) == {'det', 'map'}
    model.zero_grad()
    out.aux['camera.loss_depth'].backward()
    depthnet = model.encoders['camera'].vtransform.depthnet.weight.grad
    nd = model.encoders['camera'].vtransform.num_depth
    assert depthnet[:nd].abs().sum() > 0 and not depthnet[nd:].any()  # depth logits only, not the context
    assert all(p.grad is None or not p.grad.any() for p in model.encoders['lidar'].parameters())
    model.eval()
    with torch.no_grad():
        aux = {}
        batch = model.data_preprocessor(copy.deepcopy(test_data), False)
        model.extract_feat(batch['inputs'], batch['data_samples'], aux=aux)
    assert aux == {}


def test_camera_and_lidar_bevs_share_the_heads_layout(setup):
    """A place (x, y) of the augmented LiDAR frame lands in BEV row y, column x in both encoders'
    maps, the layout of the heads' targets (test_transfusion_head: a box at (x, y) peaks at row
    y, column x), so the fuser adds up features of one place. On a training sample (its resize,
    crop, flip and BEV rotation): the camera splats one lit frustum point, the LiDAR encodes a
    small cluster of points through voxelization and its sparse encoder (weights made positive,
    so features stay where the points are)."""
    from fuller.models.camera.rig import CameraRig

    cfg, model, data, _ = setup
    model = copy.deepcopy(model).eval()
    batch = model.data_preprocessor(copy.deepcopy(data), False)
    cams = CameraRig.from_metainfo([s.metainfo for s in batch['data_samples']])
    vt = model.encoders['camera'].vtransform
    vt.downsample = torch.nn.Identity()  # the pooled grid itself (the convs after it keep the layout)
    lo, step = vt.bounds[:, 0], vt.bounds[:, 2]

    geom = vt.frustum_points(cams)[0]  # [N, D, fH, fW, 3]
    # the frustum point nearest to an asymmetric place, away from the axes and diagonals
    target = torch.tensor([17.3, -9.1, 0.0])
    dist = (geom[..., :2] - target[:2]).norm(dim=-1) + 10.0 * ((geom[..., 2] - lo[2]) / step[2] < 0.5)
    n, d, v, u = [int(i) for i in torch.unravel_index(dist.argmin(), dist.shape)]
    p = geom[n, d, v, u]
    assert (p[:2] - target[:2]).norm() < 1.5
    col, row = [int(c) for c in ((p[:2] - lo[:2]) / step[:2]).floor()]
    fh, fw = vt.feature_size
    x = torch.full((len(cams.img_aug[0]), vt.num_depth + vt.out_channels, fh, fw), -30.0)
    x[:, d] = 30.0  # every pixel's depth: bin d
    x[:, vt.num_depth:] = 0.0
    x[n, vt.num_depth:, v, u] = 1.0  # one lit pixel
    cam_bev = vt.splat(x, cams, 1, x.shape[0])[0].sum(0)  # [ny, nx]
    assert cam_bev.shape == (vt.ny, vt.nx)
    assert cam_bev.flatten().argmax() == row * vt.nx + col and cam_bev[row, col] > 0.9 * cam_bev.sum()

    lidar = model.encoders['lidar']
    with torch.no_grad():
        for m in lidar.backbone.modules():
            if hasattr(m, 'weight') and m.weight is not None and m.weight.dim() > 1:
                m.weight.abs_()
    gen = torch.Generator().manual_seed(0)
    cluster = torch.cat([p[:2] + 0.2 * torch.randn(60, 2, generator=gen), torch.rand(60, 1, generator=gen) * 2 - 1,
                         torch.zeros(60, 2)], 1)
    lidar_bev = lidar([cluster])[0].sum(0)  # [ny', nx']
    stride = vt.nx // lidar_bev.shape[1]
    assert lidar_bev.shape == (vt.ny // stride, vt.nx // stride)
    r, c = divmod(int(lidar_bev.flatten().argmax()), lidar_bev.shape[1])
    assert abs(r - row // stride) <= 1 and abs(c - col // stride) <= 1, ((r, c), (row // stride, col // stride))


def test_detection_losses_and_decoding_run_in_fp32_under_autocast(setup):
    """The CenterPoint head's convolutions autocast; its losses and box decoding run in fp32 (as
    BEVFusion's force_fp32 on CenterHead.loss and get_bboxes). With the heatmap saturated (bias
    +12, every cell's probability 1 - 6e-6), fp32 clamps negatives to 1 - 1e-4 and the focal loss
    stays finite; bf16 would round that clamp to 1. Under bf16 the losses equal fp32's to the
    convolutions' rounding, and the boxes decode in fp32 through circle NMS."""
    _, model, data, _ = setup
    model.eval()
    head = model.heads.det
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    with torch.no_grad():
        feats = model(**batch, mode='tensor')['shared']
        samples = batch['data_samples']
        assert len(samples[0].gt_instances_3d) > 0
        fp32 = head.loss(feats, samples)
        # Unchanged in fp32: the same numbers as mmdet3d's CenterHead.loss and predict.
        ref = head.head.loss([feats], samples)
        assert torch.equal(fp32['loss_heatmap'], ref['task0.loss_heatmap'])
        assert torch.equal(fp32['loss_bbox'], ref['task0.loss_bbox'])
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf16 = head.loss(feats, samples)
        for k in ('loss_heatmap', 'loss_bbox'):
            assert bf16[k].dtype == torch.float32, k
            assert torch.isclose(bf16[k], fp32[k], rtol=2e-2), (k, bf16[k], fp32[k])

        last = head.head.task_heads[0].heatmap[-1]
        bias = last.bias.clone()
        last.bias.fill_(12.0)
        try:
            saturated = head.loss(feats, samples)['loss_heatmap']
            with torch.autocast('cpu', dtype=torch.bfloat16):
                saturated_bf16 = head.loss(feats, samples)['loss_heatmap']
            assert torch.isfinite(saturated) and torch.isclose(saturated_bf16, saturated, rtol=2e-2)
        finally:
            last.bias.copy_(bias)

        last.bias.fill_(0.0)  # scores around 0.5: boxes to decode
        try:
            pred = head.predict(feats, samples)[0]
            with torch.autocast('cpu', dtype=torch.bfloat16):
                pred_bf16 = head.predict(feats, samples)[0]
        finally:
            last.bias.copy_(bias)
    assert len(pred.bboxes_3d) > 0
    assert pred_bf16.scores_3d.dtype == torch.float32 and pred_bf16.bboxes_3d.tensor.dtype == torch.float32
    # Circle NMS takes the boxes to numpy, which has no bf16 (mmdet3d's path fails there under
    # bf16 autocast); scores near 0.5 tie, so the kept sets may differ by a few boxes.
    assert abs(len(pred_bf16.bboxes_3d) - len(pred.bboxes_3d)) <= 0.1 * len(pred.bboxes_3d)
    assert torch.isclose(pred_bf16.scores_3d.max(), pred.scores_3d.max(), atol=1e-2)
