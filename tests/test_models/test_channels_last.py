"""The demo model keeps its 2-D convolution weights in channels-last layout (a speed setting of
``FullerNet``): same names, shapes and values as the default layout, the same outputs, and the
layout survives ``init_weights``, a state-dict load and a training step."""

import copy

import torch
from mmengine.registry import init_default_scope
from torch import nn

from fuller.registry import MODELS


def _conv_weights(model):
    return {n: m.weight for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}


def test_channels_last_model_equals_the_default_layout(demo_root, tmp_path):
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper

    from fuller.registry import DATASETS
    from fuller.testing import tiny_config

    cfg = tiny_config(demo_root, str(tmp_path))
    assert cfg.model.channels_last is False  # the demo model's 'bf16', resolved for the tests' fp32
    cfg.model.channels_last = True
    init_default_scope('fuller')
    torch.manual_seed(0)
    fast = MODELS.build(cfg.model)
    fast.init_weights()
    plain_cfg = copy.deepcopy(cfg.model)
    plain_cfg.channels_last = False
    plain = MODELS.build(plain_cfg)
    plain.load_state_dict(fast.state_dict())
    weights = _conv_weights(fast)
    assert len(weights) > 50
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights.values())
    assert all(w.is_contiguous() for w in _conv_weights(plain).values())
    sd_fast, sd_plain = fast.state_dict(), plain.state_dict()
    assert list(sd_fast) == list(sd_plain)
    assert all(sd_fast[k].shape == sd_plain[k].shape and torch.equal(sd_fast[k], sd_plain[k]) for k in sd_fast)

    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[i] for i in range(2)])
    fast.eval(), plain.eval()
    with torch.no_grad():
        a = fast.extract_feat(*_inputs(fast, data))[0]
        b = plain.extract_feat(*_inputs(plain, data))[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

    fast.train()
    ow = build_optim_wrapper(fast, dict(cfg.optim_wrapper, amp=None))
    log = fast.train_step(copy.deepcopy(data), ow)
    assert all(float(v) == float(v) for v in log.values())
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(fast).values())
    fast.load_state_dict(plain.state_dict())  # a checkpoint in the default layout keeps the fast one
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(fast).values())


def _inputs(model, data):
    d = model.data_preprocessor(copy.deepcopy(data), False)
    return d['inputs'], d['data_samples']


def test_channels_last_follows_the_training_precision():
    """The demo model's channels_last='bf16': NHWC only when the config trains under bf16 (in
    fp32, PyTorch's channels-last BatchNorm statistics are 250x less exact: measured below);
    tools/train.py --amp off decides before the resolution."""
    import argparse
    import os.path as osp

    from mmengine.config import Config

    from fuller.engine import resolve_config
    from fuller.engine.config import load_config
    from fuller.testing import REPO_ROOT
    from fuller.utils import auto_precision

    path = osp.join(REPO_ROOT, 'configs', 'fuller', 'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
    for amp, want in ((None, False), ('bfloat16', True), ('float16', False),
                      ('auto', auto_precision(device_type='cpu')[0] == 'bfloat16')):
        cfg = Config.fromfile(path)
        assert cfg.model.channels_last == 'bf16'
        cfg.optim_wrapper.amp = amp
        cfg.optim_wrapper.device_type = 'cpu'
        assert resolve_config(cfg).model.channels_last is want, amp
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool', osp.join(REPO_ROOT, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    off = load_config(path, edit=lambda c: train._apply_amp_flags(c, argparse.Namespace(amp='off', amp_dtype=None)))
    assert off.optim_wrapper.amp is None and off.model.channels_last is False


def test_channels_last_batchnorm_statistics_are_less_exact_in_fp32():
    """Why channels_last is not used in fp32: the measurement behind the setting."""
    torch.manual_seed(0)
    x = torch.randn(1, 32, 128, 128, dtype=torch.float64) * 0.1 + 3.0
    x[:, :, :64] = 0  # half the BEV map empty, as behind the view transform
    ref = nn.BatchNorm2d(32).double()(x)
    errs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        y = nn.BatchNorm2d(32)(x.float().contiguous(memory_format=fmt))
        errs.append(float((y.double() - ref).norm() / ref.norm()))
    assert errs[0] < 1e-6 and errs[1] < 3.9e-3  # both far below bf16's rounding


def test_conv_fuser_under_autocast_casts_each_map_first():
    """Under autocast the fuser casts each BEV map to the autocast dtype (in its conv's memory
    format) before concatenating: the same output and input gradients, to the bit, as
    concatenating first (the LiDAR map in fp32, the camera map in bf16) and letting the conv cast."""
    from fuller.models.fusers.conv_fuser import ConvFuser

    torch.manual_seed(0)
    for channels_last in (False, True):
        fuser = ConvFuser([8, 24], 16)
        if channels_last:
            fuser.fuse[0].weight.data = fuser.fuse[0].weight.data.contiguous(memory_format=torch.channels_last)
        cam = torch.randn(2, 8, 12, 12).to(torch.bfloat16)
        lidar = torch.randn(2, 24, 12, 12)
        outs, grads = [], []
        for forward in (fuser.forward, lambda feats: fuser.fuse(torch.cat(feats, 1))):
            a, b = cam.clone().requires_grad_(True), lidar.clone().requires_grad_(True)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                y = forward([a, b])
            y.float().square().sum().backward()
            outs.append(y)
            grads.append((a.grad, b.grad))
        assert outs[0].dtype == torch.bfloat16 and torch.equal(outs[0], outs[1])
        assert grads[0][1].dtype == torch.float32
        assert all(torch.equal(g0, g1) for g0, g1 in zip(*grads))
        if channels_last:
            assert outs[0].is_contiguous(memory_format=torch.channels_last)
