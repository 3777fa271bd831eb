"""Weight initialisation reaches every submodule; Pretrained init_cfgs load local files or fail clearly."""

import os.path as osp

import pytest
import torch
from mmengine.model import BaseModule
from mmengine.registry import init_default_scope

from fuller.engine import read_config
from fuller.testing import REPO_ROOT

DEMO = osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
NUSCENES = osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_swint_8x4-20e_nuscenes-det-map.py')
NUSCENES_CP = osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_swint-centerpoint_8x4-20e_nuscenes-det-map.py')


def _build(cfg_model):
    from fuller.registry import MODELS

    init_default_scope('fuller')
    torch.manual_seed(0)
    return MODELS.build(cfg_model)


@pytest.mark.parametrize('config', [DEMO, NUSCENES_CP], ids=['demo', 'nuscenes-centerpoint'])
def test_every_basemodule_is_initialised(config):
    cfg = read_config(config)
    model = _build(cfg.model)
    base_modules = [n for n, m in model.named_modules() if isinstance(m, BaseModule)]
    # Modules that sit inside plain containers (ModuleDict, nn.ModuleList, wrappers) are among them.
    assert 'encoders.camera.backbone' in base_modules and 'heads.det.head.task_heads.0' in base_modules
    model.init_weights()
    uninitialised = [n for n, m in model.named_modules() if isinstance(m, BaseModule) and not m.is_init]
    assert uninitialised == []
    det_cfg = cfg.model.heads.det
    init_bias = det_cfg.separate_head.init_bias
    for task_head in model.heads['det'].head.task_heads:
        hm = task_head.heatmap[-1]
        assert torch.allclose(hm.bias, torch.full_like(hm.bias, init_bias))
        # Prior initialisation: every cell starts near sigmoid(init_bias).
        assert hm.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_bevfusion_network_is_initialised_with_the_heatmap_prior():
    """BEVFusion's nuScenes network (TransFusion head): every BaseModule initialised, the dense
    heatmap's and the query heatmap's last convs at the CenterNet prior, the decoder Xavier-uniform."""
    model = _build(read_config(NUSCENES).model)
    model.init_weights()
    assert [n for n, m in model.named_modules() if isinstance(m, BaseModule) and not m.is_init] == []
    head = model.heads['det']
    assert torch.allclose(head.heatmap_head[-1].bias, torch.full((10,), -2.19))
    assert torch.allclose(head.prediction_heads[0].heatmap[-1].bias, torch.full((10,), -2.19))
    w = head.decoder[0].self_attn.in_proj_weight
    bound = (6 / sum(w.shape)) ** 0.5  # xavier_uniform_
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_initial_heatmap_starts_at_the_prior(demo_root, tmp_path):
    """The first heatmap prediction is about sigmoid(init_bias) everywhere, whatever the feature scale
    (the first training step normalises the head's features with batch statistics)."""
    from fuller.testing import tiny_config

    cfg = tiny_config(demo_root, str(tmp_path))
    model = _build(cfg.model)
    model.init_weights()
    head = model.heads['det'].head
    feats = torch.randn(2, head.shared_conv.conv.in_channels, 32, 32) * 3
    model.train()
    with torch.no_grad():
        hm = head([feats])[0][0]['heatmap'].sigmoid()
    prior = torch.sigmoid(torch.tensor(cfg.model.heads.det.separate_head.init_bias))
    assert (hm.mean() - prior).abs() < 0.01
    assert (hm - prior).abs().max() < 0.15


def _assert_backbone_loaded(model, donor) -> None:
    """The camera backbone holds the donor's tensors; everything else was initialised as usual."""
    got = model.encoders['camera'].backbone.state_dict()
    for k, v in donor.state_dict().items():
        assert torch.equal(got[k], v), k
    assert all(m.is_init for m in model.modules() if isinstance(m, BaseModule))


def _camera_backbone_cfg(tmp_path, checkpoint, prefix=None):
    cfg = read_config(DEMO)
    init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    if prefix:
        init_cfg['prefix'] = prefix
    cfg.model.encoders.camera.backbone.init_cfg = init_cfg
    return cfg


def test_pretrained_camera_backbone_loads_a_local_file(tmp_path):
    cfg = read_config(DEMO)
    donor = _build(cfg.model).encoders['camera'].backbone
    with torch.no_grad():
        for p in donor.parameters():
            p.normal_()
    # An mmengine-style checkpoint of a whole detector: the backbone's keys under a prefix.
    path = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': {f'img_backbone.{k}': v for k, v in donor.state_dict().items()},
                'meta': {'note': 'plain data'}}, path)
    cfg = _camera_backbone_cfg(tmp_path, path, prefix='img_backbone')
    model = _build(cfg.model)
    model.init_weights()
    _assert_backbone_loaded(model, donor)


def test_pretrained_reports_missing_keys(tmp_path):
    from fuller.models.init import report_pretrained

    cfg = read_config(DEMO)
    donor = _build(cfg.model).encoders['camera'].backbone.state_dict()
    partial = {k: v for k, v in donor.items() if not k.startswith('layer4.')}
    path = str(tmp_path / 'partial.pth')
    torch.save(partial, path)
    model = _build(_camera_backbone_cfg(tmp_path, path).model)
    model.init_weights()
    reports = report_pretrained(model)
    (rep,) = reports
    assert rep['key'] == 'model.encoders.camera.backbone'
    assert rep['missing'] and all(k.startswith('layer4.') for k in rep['missing'])
    assert not rep['unexpected'] and not rep['mismatched'] and not rep['not_loaded']
    assert len(rep['matched']) == len(partial)


def test_pretrained_missing_file_names_key_and_file(tmp_path):
    missing = str(tmp_path / 'no_such_weights.pth')
    model = _build(_camera_backbone_cfg(tmp_path, missing).model)
    with pytest.raises(FileNotFoundError, match=r'model\.encoders\.camera\.backbone\.init_cfg.*no_such_weights\.pth'):
        model.init_weights()


def test_pretrained_remote_address_is_refused(tmp_path):
    model = _build(_camera_backbone_cfg(tmp_path, 'torchvision://resnet18').model)
    with pytest.raises(ValueError, match='downloads nothing'):
        model.init_weights()


def test_pretrained_file_that_does_not_fit_is_an_error(tmp_path):
    path = str(tmp_path / 'other.pth')
    torch.save({'some.other.weight': torch.zeros(3)}, path)
    model = _build(_camera_backbone_cfg(tmp_path, path).model)
    with pytest.raises(ValueError, match='no tensor of .*other.pth'):
        model.init_weights()


def test_pretrained_swin_from_a_detector_checkpoint(tmp_path):
    """nuImages-style weights for the nuScenes config's Swin-T: an mmdet detector checkpoint whose
    backbone keys start with 'backbone.' (Swin's own loader takes those)."""
    cfg = read_config(NUSCENES)
    cfg.model.encoders.camera.backbone.convert_weights = False
    donor = _build(cfg.model).encoders['camera'].backbone
    with torch.no_grad():
        for p in donor.parameters():
            p.normal_()
    path = str(tmp_path / 'swint-detector.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in donor.state_dict().items()}}, path)
    cfg.model.encoders.camera.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    model = _build(cfg.model)
    model.init_weights()
    _assert_backbone_loaded(model, donor)


def test_missing_project_checkpoint_says_where_it_comes_from(tmp_path):
    """A checkpoint the project's configs name (by file name) is missing: the error says how to get it."""
    missing = str(tmp_path / 'demo-camera_r18-tiny_seg.pth')
    model = _build(_camera_backbone_cfg(tmp_path, missing).model)
    with pytest.raises(FileNotFoundError, match=r'demo-camera_r18-tiny_seg\.pth.*tools/pretrain_demo_camera\.py'):
        model.init_weights()


def test_drop_pretrained_removes_only_pretrained_entries_and_pretrained_files_lists_them():
    """drop_pretrained (tests' tiny runs, speed benchmarks) removes Pretrained init entries
    wherever they are and keeps the others."""
    from fuller.engine import drop_pretrained

    model = {'encoders': {'camera': {'backbone': {'type': 'R', 'init_cfg': {'type': 'Pretrained', 'checkpoint': 'x'}},
                                     'neck': {'init_cfg': [{'type': 'Xavier'}, {'type': 'Pretrained', 'checkpoint': 'y'}]},
                                     'vtransform': {'init_cfg': {'type': 'Kaiming'}}}},
             'heads': [{'init_cfg': [{'type': 'Pretrained', 'checkpoint': 'z'}]}]}
    changed = drop_pretrained(model)
    assert changed == ['model.encoders.camera.backbone.init_cfg', 'model.encoders.camera.neck.init_cfg',
                       'model.heads[0].init_cfg']
    assert model['encoders']['camera']['backbone']['init_cfg'] is None
    assert model['encoders']['camera']['neck']['init_cfg'] == [{'type': 'Xavier'}]
    assert model['encoders']['camera']['vtransform']['init_cfg'] == {'type': 'Kaiming'}
    assert model['heads'][0]['init_cfg'] is None
    assert drop_pretrained(model) == []
    model['encoders']['camera']['neck']['init_cfg'].append({'type': 'Pretrained', 'checkpoint': 'y'})
    model['heads'][0]['init_cfg'] = {'type': 'Pretrained', 'checkpoint': 'y'}
    from fuller.engine import pretrained_files

    assert pretrained_files(model) == ['y']
