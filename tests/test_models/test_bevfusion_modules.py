"""BEVFusion's modules as FULLER builds them: structure, parameter names and shapes as in
BEVFusion-MIT's code and configs (mit-han-lab/bevfusion, mmdet3d/models/necks/generalized_lss.py,
mmdet3d/models/vtransforms/lss.py; configs/nuscenes/det/transfusion/secfpn/camera+lidar/default.yaml
and swint_v0p075/default.yaml), and their computation."""

import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

from fuller.registry import MODELS

# BEVFusion's Swin-T camera neck (seg/fusion-bev256d2-lss.yaml, camera.neck).
LSSFPN = dict(type='GeneralizedLSSFPN', in_channels=[192, 384, 768], out_channels=256, start_level=0, num_outs=3,
              norm_cfg=dict(type='BN2d', requires_grad=True), act_cfg=dict(type='ReLU', inplace=True),
              upsample_cfg=dict(mode='bilinear', align_corners=False))


def _conv_bn_relu(x, m):
    x = F.conv2d(x, m.conv.weight, m.conv.bias, padding=m.conv.padding)
    x = F.batch_norm(x, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, False, 0.0, m.bn.eps)
    return x.relu()


def test_generalized_lss_fpn_has_bevfusions_parameters_and_computation():
    init_default_scope('fuller')
    neck = MODELS.build(LSSFPN).eval()
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items() if k.endswith('weight')}
    # Level 0 mixes 192 backbone channels with the 256 of the fused level above; level 1 (the last
    # with an output) mixes 384 with the raw top level's 768. No bias next to BN (ConvModule 'auto').
    assert shapes == {'lateral_convs.0.conv.weight': (256, 448, 1, 1), 'lateral_convs.0.bn.weight': (256,),
                      'lateral_convs.1.conv.weight': (256, 1152, 1, 1), 'lateral_convs.1.bn.weight': (256,),
                      'fpn_convs.0.conv.weight': (256, 256, 3, 3), 'fpn_convs.0.bn.weight': (256,),
                      'fpn_convs.1.conv.weight': (256, 256, 3, 3), 'fpn_convs.1.bn.weight': (256,)}
    assert not any(k.endswith('conv.bias') for k in neck.state_dict())
    torch.manual_seed(0)
    for m in neck.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    feats = (torch.randn(2, 192, 32, 88), torch.randn(2, 384, 16, 44), torch.randn(2, 768, 8, 22))
    with torch.no_grad():
        out = neck(feats)
        up = F.interpolate(feats[2], size=(16, 44), mode='bilinear', align_corners=False)
        l1 = _conv_bn_relu(_conv_bn_relu(torch.cat([feats[1], up], 1), neck.lateral_convs[1]), neck.fpn_convs[1])
        up = F.interpolate(l1, size=(32, 88), mode='bilinear', align_corners=False)
        l0 = _conv_bn_relu(_conv_bn_relu(torch.cat([feats[0], up], 1), neck.lateral_convs[0]), neck.fpn_convs[0])
    assert len(out) == 2 and out[0].shape == (2, 256, 32, 88) and out[1].shape == (2, 256, 16, 44)
    torch.testing.assert_close(out[1], l1)
    torch.testing.assert_close(out[0], l0)


def test_residual_sparse_encoder_is_bevfusions_lidar_backbone():
    """21 sparse convs (the input conv, 3 stages of 2 basic blocks + a strided conv, a last stage
    of 2 basic blocks, the z-collapsing conv), z extent 41 folded to 2 x 128 = 256 BEV channels at
    1/8 of the 1440 x 1440 grid."""
    from spconv.pytorch.conv import SparseConvolution

    init_default_scope('fuller')
    enc = MODELS.build(dict(type='ResidualSparseEncoder', in_channels=5, sparse_shape=[41, 1440, 1440]))
    convs = [(n, m) for n, m in enc.named_modules() if isinstance(m, SparseConvolution)]
    assert len(convs) == 21
    assert enc.out_depth() == 2 and enc.out_channels == 256
    names = {k: tuple(v.shape) for k, v in enc.state_dict().items() if k.endswith('.weight')}
    # BEVFusion's parameter names (mmdet3d's SparseEncoder / SparseBasicBlock); spconv 2 kernels
    # are [out, k, k, k, in].
    assert names['conv_input.0.weight'] == (16, 3, 3, 3, 5)
    assert names['encoder_layers.encoder_layer1.0.conv1.weight'] == (16, 3, 3, 3, 16)
    assert names['encoder_layers.encoder_layer1.2.0.weight'] == (32, 3, 3, 3, 16)
    assert names['encoder_layers.encoder_layer4.1.conv2.weight'] == (128, 3, 3, 3, 128)
    assert names['conv_out.0.weight'] == (128, 3, 1, 1, 128)
    n_params = sum(p.numel() for p in enc.parameters())
    assert 2.6e6 < n_params < 2.8e6, n_params
    # Runs on CPU (spconv's native algorithm) and under bf16 autocast, in fp32.
    torch.manual_seed(0)
    coors = torch.unique(torch.cat([torch.zeros(400, 1, dtype=torch.long), torch.randint(0, 40, (400, 1)),
                                    torch.randint(600, 840, (400, 2))], 1), dim=0)
    feats = torch.randn(len(coors), 5)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = enc(feats, coors, 1)
    assert out.shape == (1, 256, 180, 180) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().sum() > 0


def test_cell_index_trunc_is_bevfusions_bev_pool_indexing():
    """cell_index='trunc' indexes cells as BEVFusion's vtransforms/base.py ``bev_pool``:
    ``((geom - (bx - dx / 2)) / dx).long()`` with ``bx = lo + dx / 2`` (``gen_dx_bx``), kept when
    0 <= index < nx; 'floor' drops the points up to one cell below each lower bound instead."""
    from fuller.models.camera import LSSViewTransform

    bounds = dict(xbound=(-54.0, 54.0, 0.3), ybound=(-54.0, 54.0, 0.3), zbound=(-10.0, 10.0, 20.0))
    vts = {mode: LSSViewTransform(8, 4, image_size=(32, 88), feature_size=(4, 11), dbound=(1.0, 60.0, 0.5),
                                  cell_index=mode, **bounds) for mode in ('floor', 'trunc')}
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(1, 1, 118, 4, 11, 3, generator=gen) * torch.tensor([120.0, 120.0, 50.0]) - \
        torch.tensor([60.0, 60.0, 30.0])
    pts[0, 0, 0, 0, :3] = torch.tensor([[-54.1, 0.0, 0.0], [0.0, -54.29, -10.5], [-54.0, 53.99, 9.99]])
    dx = torch.tensor([b[2] for b in bounds.values()])
    bx = torch.tensor([b[0] + b[2] / 2.0 for b in bounds.values()])
    nx = torch.tensor([int((b[1] - b[0]) / b[2]) for b in bounds.values()])
    ref = ((pts - (bx - dx / 2.0)) / dx).long()
    ref_kept = ((ref >= 0) & (ref < nx)).all(-1)
    for vt in vts.values():
        vt.frustum_points = lambda cams, pts=pts: pts
    trunc, floor = vts['trunc'].cells(None), vts['floor'].cells(None)
    assert torch.equal(trunc >= 0, ref_kept)
    x, y, z = ref.unbind(-1)
    assert torch.equal(trunc[ref_kept], ((z * 360 + y) * 360 + x)[ref_kept])
    assert trunc[0, 0, 0, 0, :3].tolist() == [180 * 360 + 0, 0 * 360 + 180, 359 * 360 + 0]
    assert (floor[0, 0, 0, 0, :3] == -1).tolist() == [True, True, False]
    assert ((floor >= 0) & (trunc != floor)).sum() == 0  # where floor keeps a point, trunc agrees
