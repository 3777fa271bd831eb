"""CUDA paths: BEV pooling on the GPU against the CPU reference, and calibrated training
(spconv on CUDA, AMP) through the Runner. Skipped where no CUDA device is present."""

import pytest
import torch
from mmengine.runner import Runner

from fuller.models.camera import bev_pool, bev_pool_scatter
from fuller.testing import tiny_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]


@pytest.mark.parametrize('impl', ['auto', 'indexed', 'sorted', 'scatter'])
def test_bev_pool_on_cuda_matches_the_cpu_reference(impl):
    b, nx, ny, nz, c, n = 2, 40, 30, 2, 16, 20000
    feats = torch.randn(n, c, dtype=torch.float64)
    coords = torch.stack([torch.randint(-3, nx + 3, (n,)), torch.randint(-3, ny + 3, (n,)),
                          torch.randint(0, nz + 1, (n,)), torch.randint(0, b, (n,))], 1)
    ref = bev_pool_scatter(feats, coords, b, nx, ny, nz)
    x = feats.clone().cuda().requires_grad_(True)
    out = bev_pool(x, coords.cuda(), b, nx, ny, nz, impl=impl)
    torch.testing.assert_close(out.cpu(), ref)
    weight = torch.randn_like(ref)
    out.backward(weight.cuda())
    xr = feats.clone().requires_grad_(True)  # independent leaf on the CPU
    bev_pool_scatter(xr, coords, b, nx, ny, nz).backward(weight)
    torch.testing.assert_close(x.grad.cpu(), xr.grad)


@pytest.mark.parametrize('amp', [None, 'bfloat16', 'float16'])
def test_calibrated_training_runs_on_cuda(demo_root, tmp_path, amp):
    cfg = tiny_config(demo_root, str(tmp_path))
    # amp stated for every case: the demo schedule's amp='auto' would make the fp32 case bf16
    wrapper = dict(type='CalibratedOptimWrapper', inter=dict(type='FullerInter'), intra=dict(type='ModalityCalibrator'),
                   amp=amp, device_type='cuda')
    if amp == 'float16':  # the default scale 65536 overflows on the untrained model: steps would be skipped
        wrapper.update(init_scale=4.0)
    cfg.optim_wrapper = dict(cfg.optim_wrapper, **wrapper)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert next(runner.model.parameters()).is_cuda
    hub = runner.message_hub
    for key in ('train/loss', 'train/calib/grad_norm_det', 'train/calib/grad_norm_map'):
        assert torch.isfinite(torch.tensor(hub.get_scalar(key).current())), key
    assert abs(hub.get_scalar('train/calib/cam_lidar_ratio_after').current() - 1.0) < 1e-2
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
