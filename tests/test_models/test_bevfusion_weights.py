"""BEVFusion's checkpoints in FULLER's layout (fuller/models/bevfusion_weights.py).

The synthetic checkpoints carry BEVFusion-MIT's names and layouts as read from its code
(mit-han-lab/bevfusion): module names as FULLER's (tests/test_models/test_{transfusion_head,
depth_lss,bevfusion_modules}.py check them module by module) but ``heads.object``, ``fuser.{0,1}``
and ``heads.map.classifier.{0,1,3,4,6}``; the grid constants ``vtransform.frustum/dx/bx/nx``
(``vtransforms/base.py``); BEV kernels for ``[C, X, Y]`` maps; spconv 1.x sparse kernels
``[kx, ky, kz, in, out]`` (its bundled ``mmdet3d/ops/spconv``; voxel axes x, y, z as its
``SparseEncoder``'s ``sparse_shape [1440, 1440, 41]``); the class order of
``configs/nuscenes/default.yaml``; mmdet3d 0.x boxes (``tools/data_converter/nuscenes_converter.py``:
``[locs, wlh, -yaw - pi/2]``). mmdet3d's port (open-mmlab/mmdetection3d ``projects/BEVFusion``):
its config's prefixes and mmdet's ``DetrTransformerDecoderLayer`` names.
"""

import math
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmdet3d.models.backbones import SECOND
from mmdet3d.models.necks import SECONDFPN
from torch import nn

from fuller.engine.checkpoint_io import foreign_layout, match_state_dict
from fuller.models.bevfusion_weights import BEVFUSION_CLASSES, BEVFUSION_MAP_CLASSES, convert_bevfusion, detect_source
from fuller.testing import REPO_ROOT

DET_CFG = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-det_lc_swint_8x4-6e_nuscenes.py')
MAP_CFG = osp.join(REPO_ROOT, 'configs', 'bevfusion', 'bevfusion-map_lc_swint_8x4-20e_nuscenes.py')
JOINT_CFG = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_swint_8x4-20e_nuscenes-det-map.py')
FULLER_CLASSES = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle', 'motorcycle', 'pedestrian',
                  'traffic_cone', 'barrier')

# FULLER modules whose 2-D kernels run on BEV maps (written out here, apart from the converter's list).
_BEV_PREFIXES = ('encoders.camera.vtransform.downsample.', 'fuser.', 'decoder.', 'heads.det.shared_conv.',
                 'heads.det.heatmap_head.', 'heads.map.')


def to_bevfusion_mit(state: dict, classes=FULLER_CLASSES, map_classes=BEVFUSION_MAP_CLASSES) -> dict:
    """A FULLER state dict as BEVFusion-MIT would store the same network (the inverse of the
    conversion, written independently of it)."""
    out = {}
    for k, v in state.items():
        v = v.clone()
        if v.dim() == 4 and k.startswith(_BEV_PREFIXES):
            v = v.transpose(-1, -2).contiguous()
        if v.dim() == 5 and k.startswith('encoders.lidar.backbone.'):
            v = v.permute(3, 2, 1, 4, 0).contiguous()  # [out, z, y, x, in] -> spconv 1.x [x, y, z, in, out]
        if k in ('heads.det.heatmap_head.1.weight', 'heads.det.heatmap_head.1.bias') or \
                ('.heatmap.1.' in k and k.startswith('heads.det.prediction_heads.')):
            v = v[[classes.index(c) for c in BEVFUSION_CLASSES]]
        if k == 'heads.det.class_encoding.weight':
            v = v[:, [classes.index(c) for c in BEVFUSION_CLASSES]]
        if k.startswith('heads.map.cls.'):
            v = v[[map_classes.index(c) for c in BEVFUSION_MAP_CLASSES]]
        if k.startswith('heads.det.prediction_heads.') and '.dim.1.' in k:
            v = v[[1, 0, 2]]  # (l, w, h) -> (w, l, h)
        if k.startswith('heads.det.prediction_heads.') and '.rot.1.' in k:
            v = -v[[1, 0]]  # (sin yaw, cos yaw) -> (sin a, cos a), a = -yaw - pi/2
        k = k.replace('heads.det.', 'heads.object.').replace('fuser.fuse.', 'fuser.')
        k = k.replace('heads.map.body.', 'heads.map.classifier.').replace('heads.map.cls.', 'heads.map.classifier.6.')
        out[k] = v
    # vtransforms/base.py: dx, bx, nx and the frustum are nn.Parameters (requires_grad=False)
    out['encoders.camera.vtransform.frustum'] = torch.zeros(118, 32, 88, 3)
    out['encoders.camera.vtransform.dx'] = torch.tensor([0.3, 0.3, 20.0])
    out['encoders.camera.vtransform.bx'] = torch.tensor([-53.85, -53.85, 0.0])
    out['encoders.camera.vtransform.nx'] = torch.tensor([360, 360, 1])
    return out


def to_mmdet3d(mit: dict) -> dict:
    """BEVFusion-MIT names -> mmdet3d projects/BEVFusion's (its config's module keys; mmdet's
    DetrTransformerDecoderLayer: self_attn/cross_attn.attn, ffn.layers, norms)."""
    prefixes = [('encoders.camera.backbone.', 'img_backbone.'), ('encoders.camera.neck.', 'img_neck.'),
                ('encoders.camera.vtransform.', 'view_transform.'), ('encoders.lidar.backbone.', 'pts_middle_encoder.'),
                ('fuser.', 'fusion_layer.'), ('decoder.backbone.', 'pts_backbone.'), ('decoder.neck.', 'pts_neck.'),
                ('heads.object.', 'bbox_head.')]
    out = {}
    for k, v in mit.items():
        for a, b in prefixes:
            if k.startswith(a):
                k = b + k[len(a):]
                break
        if k.startswith('bbox_head.decoder.'):
            for a, b in [('.self_attn.', '.self_attn.attn.'), ('.multihead_attn.', '.cross_attn.attn.'),
                         ('.linear1.', '.ffn.layers.0.0.'), ('.linear2.', '.ffn.layers.1.'),
                         ('.norm1.', '.norms.0.'), ('.norm2.', '.norms.1.'), ('.norm3.', '.norms.2.')]:
                k = k.replace(a, b)
        out[k] = v
    return out


@pytest.fixture(scope='module')
def det_model():
    from fuller.engine.bevfusion_convert import build_model
    torch.manual_seed(0)
    model, classes, _ = build_model(DET_CFG)
    return model, tuple(classes)


def test_tensor_counts_are_bevfusion_mits(det_model):
    """BEVFusion-MIT's detection model has 582 tensors (578 here + its 4 grid constants) and its
    map model 465 (461 + 4): every one of them is converted or dropped with its reason."""
    model, classes = det_model
    mit = to_bevfusion_mit(model.state_dict(), classes)
    assert len(mit) == 582
    conv = convert_bevfusion(mit, model.state_dict(), classes=classes)
    assert conv.complete and len(conv.state) == 578
    assert sorted(conv.dropped) == [f'encoders.camera.vtransform.{k}' for k in ('bx', 'dx', 'frustum', 'nx')]
    assert all('FULLER derives it' in why for why in conv.dropped.values())
    from fuller.engine.bevfusion_convert import build_model
    map_model, _, map_classes = build_model(MAP_CFG)
    map_mit = to_bevfusion_mit(map_model.state_dict(), map_classes=map_classes)
    assert len(map_mit) == 465
    assert convert_bevfusion(map_mit, map_model.state_dict(), map_classes=map_classes).complete


def test_round_trip_gives_back_every_tensor(det_model):
    model, classes = det_model
    own = model.state_dict()
    conv = convert_bevfusion(to_bevfusion_mit(own, classes), own, classes=classes)
    for k, v in own.items():
        assert torch.equal(conv.state[k], v), k
    kinds = {c for cs in conv.changes.values() for c in cs}
    assert kinds == {'BEV kernel [X, Y] -> [Y, X]', 'sparse kernel spconv1 (x,y,z) -> spconv2 (z,y,x)',
                     'class order', 'box dims (w, l, h) -> (l, w, h)', 'box yaw -yaw-pi/2 -> yaw'}
    # image-plane kernels are untouched
    assert 'encoders.camera.vtransform.dtransform.3.weight' not in conv.changes
    assert 'encoders.camera.neck.fpn_convs.0.conv.weight' not in conv.changes


def test_mmdet3d_port_names_convert_to_the_same_tensors(det_model):
    model, classes = det_model
    own = model.state_dict()
    mit = to_bevfusion_mit(own, classes)
    mm = to_mmdet3d(mit)
    assert detect_source(mm) == 'mmdet3d' and detect_source(mit) == 'bevfusion-mit'
    conv = convert_bevfusion(mm, own, classes=classes, box_convention='0.x')
    assert conv.complete
    assert all(torch.equal(conv.state[k], v) for k, v in own.items())
    # the port trains on mmdet3d 1.x boxes: by default its dim/rot convs are taken as they are
    plain = convert_bevfusion(mm, own, classes=classes)
    key = 'heads.det.prediction_heads.0.dim.1.weight'
    assert torch.equal(plain.state[key], mit['heads.object.prediction_heads.0.dim.1.weight'])


def test_bev_conv_stacks_reproduce_bevfusions_computation():
    """Fuser + SECOND + SECONDFPN with BEVFusion's weights on a [C, X, Y] map, and with the
    converted weights on the transposed map: the same output, transposed. Loaded as they are,
    the 3x3 kernels fit by shape and compute something else."""
    torch.manual_seed(0)

    def stack():
        fuser = nn.Sequential(nn.Conv2d(12, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True))
        second = SECOND(in_channels=16, out_channels=[16, 32], layer_nums=[2, 2], layer_strides=[1, 2])
        fpn = SECONDFPN(in_channels=[16, 32], out_channels=[16, 16], upsample_strides=[1, 2],
                        use_conv_for_no_stride=True)
        return nn.ModuleDict(dict(fuser=fuser, backbone=second, neck=fpn)).eval()

    def run(m, x):
        return m['neck'](m['backbone'](m['fuser'](x)))[0]

    bevfusion, fuller = stack(), stack()
    for mod in bevfusion.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    names = {'fuser.': 'fuser.fuse.', 'backbone.': 'decoder.backbone.', 'neck.': 'decoder.neck.'}

    def fuller_name(k):
        return next(new + k[len(old):] for old, new in names.items() if k.startswith(old))
    mit = {fuller_name(k).replace('fuser.fuse.', 'fuser.'): v for k, v in bevfusion.state_dict().items()}
    target = {fuller_name(k): v for k, v in fuller.state_dict().items()}
    conv = convert_bevfusion(mit, target, source='bevfusion-mit')
    assert conv.complete
    inv = {v: k for k, v in {k: fuller_name(k) for k in fuller.state_dict()}.items()}
    fuller.load_state_dict({inv[k]: v for k, v in conv.state.items()})
    x = torch.randn(1, 12, 24, 20)  # [B, C, X, Y]
    with torch.no_grad():
        ref = run(bevfusion, x)
        out = run(fuller, x.transpose(-1, -2))
        assert torch.allclose(out, ref.transpose(-1, -2), atol=1e-5)
        fuller.load_state_dict(bevfusion.state_dict())  # the same names and shapes, loaded as they are
        as_is = run(fuller, x.transpose(-1, -2))
        assert (as_is - ref.transpose(-1, -2)).abs().mean() > 0.05 * ref.abs().mean()


def test_sparse_kernels_reproduce_bevfusions_xyz_convolution():
    """A submanifold 3x3x3 conv and BEVFusion's strided conv_out ((1, 1, 3) stride (1, 1, 2) in
    x, y, z) with BEVFusion-MIT's spconv 1.x kernels on (x, y, z) voxels, and FULLER's ((3, 1, 1)
    stride (2, 1, 1) in z, y, x) with the converted kernels on (z, y, x) voxels: the same dense output."""
    from spconv.pytorch import ConvAlgo, SparseConv3d, SparseConvTensor, SubMConv3d

    torch.manual_seed(0)
    X, Y, Z = 9, 7, 5
    n = 60
    flat = torch.randperm(X * Y * Z)[:n]
    xyz = torch.stack([flat // (Y * Z), flat // Z % Y, flat % Z], 1).int()
    feats = torch.randn(n, 4)
    algo = ConvAlgo.Native
    cases = [(SubMConv3d, dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=1), 4, 6),
             (SparseConv3d, dict(kernel_size=(1, 1, 3), stride=(1, 1, 2)), dict(kernel_size=(3, 1, 1), stride=(2, 1, 1)),
              4, 6)]
    for cls, mit_kw, fuller_kw, cin, cout in cases:
        mit_conv = cls(cin, cout, bias=False, algo=algo, **mit_kw)
        fuller_conv = cls(cin, cout, bias=False, algo=algo, **fuller_kw)
        k = mit_kw['kernel_size']
        k = (k, k, k) if isinstance(k, int) else k
        w1 = torch.randn(*k, cin, cout)  # spconv 1.x [kx, ky, kz, in, out]
        mit_conv.weight.data.copy_(w1.permute(4, 0, 1, 2, 3))  # spconv's own 1.x -> 2.x rule
        target = {'encoders.lidar.backbone.conv.weight': fuller_conv.weight}
        conv = convert_bevfusion({'encoders.lidar.backbone.conv.weight': w1}, target, source='bevfusion-mit')
        fuller_conv.weight.data.copy_(conv.state['encoders.lidar.backbone.conv.weight'])
        b = torch.zeros(n, 1, dtype=torch.int32)
        ref = mit_conv(SparseConvTensor(feats, torch.cat([b, xyz], 1), [X, Y, Z], 1)).dense()  # [1, C, X', Y', Z']
        out = fuller_conv(SparseConvTensor(feats, torch.cat([b, xyz.flip(1)], 1), [Z, Y, X], 1)).dense()
        assert torch.allclose(out, ref.permute(0, 1, 4, 3, 2), atol=1e-5), cls.__name__
        # a spconv 2.x kernel in (x, y, z) order converts the same way
        conv2 = convert_bevfusion({'encoders.lidar.backbone.conv.weight': mit_conv.weight.detach()}, target,
                                  source='bevfusion-mit')
        assert torch.equal(conv2.state['encoders.lidar.backbone.conv.weight'], fuller_conv.weight.detach())


def test_box_convention_and_class_order_give_the_same_boxes_and_scores():
    """The last convs of BEVFusion-MIT's prediction branches and their conversion, on the same
    query features: the nuScenes boxes (wlh, yaw) each side decodes are the same, and every
    class's heatmap score follows its name."""
    torch.manual_seed(0)
    q = torch.randn(1, 64, 50)
    mit = {f'heads.object.prediction_heads.0.{b}.1.{p}': torch.randn(*s) for b, n in
           dict(dim=3, rot=2, heatmap=10).items() for p, s in (('weight', (n, 64, 1)), ('bias', (n,)))}
    target = {k.replace('heads.object.', 'heads.det.'): v.shape for k, v in mit.items()}
    conv = convert_bevfusion(mit, target, classes=FULLER_CLASSES).state

    def out(state, prefix, branch):
        return nn.functional.conv1d(q, state[f'{prefix}.{branch}.1.weight'], state[f'{prefix}.{branch}.1.bias'])
    m, f = 'heads.object.prediction_heads.0', 'heads.det.prediction_heads.0'
    wlh_mit = out(mit, m, 'dim').exp()[0]  # 0.x boxes: dims are (w, l, h), NuScenesBox takes wlh
    lwh = out(conv, f, 'dim').exp()[0]  # 1.x: (l, w, h)
    assert torch.allclose(lwh[[1, 0, 2]], wlh_mit, rtol=1e-5)
    s, c = out(mit, m, 'rot')[0]
    yaw_nus_mit = -torch.atan2(s, c) - math.pi / 2  # BEVFusion-MIT's output_to_nusc_box
    s, c = out(conv, f, 'rot')[0]
    yaw = torch.atan2(s, c)
    diff = torch.remainder(yaw - yaw_nus_mit + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-4
    heat_mit, heat = out(mit, m, 'heatmap')[0], out(conv, f, 'heatmap')[0]
    for i, name in enumerate(FULLER_CLASSES):
        assert torch.allclose(heat[i], heat_mit[BEVFUSION_CLASSES.index(name)], atol=1e-5)


def test_wrong_config_or_foreign_file_is_named(det_model):
    model, classes = det_model
    own = model.state_dict()
    mit = to_bevfusion_mit(own, classes)
    mit['fuser.0.weight'] = torch.zeros(256, 300, 3, 3)
    with pytest.raises(ValueError, match=r"fuser.0.weight -> fuser.fuse.0.weight: shape .*config wants"):
        convert_bevfusion(mit, own, classes=classes)
    with pytest.raises(ValueError, match='not a BEVFusion checkpoint'):
        detect_source({'backbone.conv1.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r"config's detection classes \['car'\] are not among"):
        convert_bevfusion(to_bevfusion_mit(own, classes), own, classes=('car',) + classes[1:],
                          src_classes=('van',) + BEVFUSION_CLASSES[1:])


@pytest.mark.slow
def test_tool_writes_checkpoints_that_load_strictly(tmp_path, det_model):
    """tools/misc/convert_bevfusion.py: a BEVFusion-MIT detector into the BEVFusion detection
    config, and detector + map model into the joint det+map config; the files load strictly
    (FULLER's --load-from check) and hold the converted tensors; a partial result is refused."""
    from fuller.engine.bevfusion_convert import build_model
    model, classes = det_model
    det = tmp_path / 'bevfusion-det.pth'
    torch.save({'state_dict': to_bevfusion_mit(model.state_dict(), classes), 'meta': {}}, det)
    map_model, _, map_classes = build_model(MAP_CFG)
    seg = tmp_path / 'bevfusion-seg.pth'
    torch.save({'state_dict': to_bevfusion_mit(map_model.state_dict(), map_classes=map_classes)}, seg)
    tool = osp.join(REPO_ROOT, 'tools', 'misc', 'convert_bevfusion.py')

    def run(*args):
        return subprocess.run([sys.executable, tool, *map(str, args)], capture_output=True, text=True, cwd=REPO_ROOT)

    r = run(DET_CFG, det, tmp_path / 'det.pth')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'all' in r.stdout and '578 / 578' in r.stdout and 'dropped 4: grid constant' in r.stdout
    state = torch.load(tmp_path / 'det.pth', weights_only=True)['state_dict']
    assert foreign_layout(state) is None and match_state_dict(model, state).exact
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    r = run(JOINT_CFG, det, tmp_path / 'partial.pth')
    assert r.returncode != 0 and 'would be partial' in r.stderr and 'heads.map' in r.stdout
    r = run(JOINT_CFG, det, tmp_path / 'joint.pth', '--map-checkpoint', seg)
    assert r.returncode == 0, r.stderr[-2000:]
    joint, _, _ = build_model(JOINT_CFG)
    ckpt = torch.load(tmp_path / 'joint.pth', weights_only=True)
    assert match_state_dict(joint, ckpt['state_dict']).exact and ckpt['meta']['complete']
    for k, v in ckpt['state_dict'].items():
        src = map_model.state_dict() if k.startswith('heads.map.') else model.state_dict()
        assert torch.equal(v, src[k]), k
