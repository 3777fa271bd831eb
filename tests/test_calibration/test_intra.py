import pytest
import torch

from fuller.calibration import ModalityCalibrator, build_intra, intra_calibrate


@pytest.mark.parametrize('target', ['mean', 'max', 'min'])
@pytest.mark.parametrize('per_sample', [False, True])
def test_equal_norms_and_unchanged_directions(target, per_sample):
    gen = torch.Generator().manual_seed(0)
    cal = ModalityCalibrator(target=target, per_sample=per_sample)
    for _ in range(50):
        a = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64) * torch.rand(1, generator=gen).item() * 10
        b = torch.randn(3, 6, 5, 5, generator=gen, dtype=torch.float64) * 0.01
        a2, b2, _ = cal(a, b)
        def nrm(x):
            return x.flatten(1).norm(dim=1) if per_sample else x.norm()

        torch.testing.assert_close(nrm(a2), nrm(b2))
        for x, y in ((a, a2), (b, b2)):
            cos = torch.nn.functional.cosine_similarity(x.flatten(1 if per_sample else 0),
                                                        y.flatten(1 if per_sample else 0), dim=-1)
            torch.testing.assert_close(cos, torch.ones_like(cos))
        if target == 'mean':
            torch.testing.assert_close(nrm(a2) + nrm(b2), nrm(a) + nrm(b))


def test_ratio_target():
    cal = ModalityCalibrator(target='ratio', ratio=2.0)
    a2, b2, _ = cal(torch.randn(100, dtype=torch.float64), 5 * torch.randn(100, dtype=torch.float64))
    torch.testing.assert_close(a2.norm() / b2.norm(), torch.tensor(2.0, dtype=torch.float64))


def test_autograd_function_is_identity_and_calibrates_backward():
    cam = torch.randn(2, 3, 4, 4, requires_grad=True)
    lidar = torch.randn(2, 5, 4, 4, requires_grad=True)
    cal = ModalityCalibrator()
    stats = {}
    c2, l2 = intra_calibrate(cam, lidar, cal, stats=stats)
    torch.testing.assert_close(c2, cam)
    torch.testing.assert_close(l2, lidar)
    w_c, w_l = torch.randn_like(cam), 100 * torch.randn_like(lidar)
    ((c2 * w_c).sum() + (l2 * w_l).sum()).backward()
    torch.testing.assert_close(cam.grad.norm(), lidar.grad.norm())
    cos = torch.nn.functional.cosine_similarity(cam.grad.flatten(), w_c.flatten(), dim=0)
    torch.testing.assert_close(cos, torch.tensor(1.0))
    assert stats['cam_lidar_ratio_before'] < 0.1
    assert abs(stats['cam_lidar_ratio_after'] - 1.0) < 1e-5
    assert intra_calibrate(cam, lidar, None) == (cam, lidar)


def test_intra_config_errors():
    with pytest.raises(ValueError, match='target'):
        build_intra(dict(type='ModalityCalibrator', target='median'))
    with pytest.raises(ValueError, match='Foo'):
        build_intra(dict(type='Foo'))
    assert build_intra(None) is None


def test_measure_only_target_passes_gradients_unchanged():
    cal = ModalityCalibrator(target='none')
    g_c, g_l = torch.randn(2, 3, 4, 4), 5 * torch.randn(2, 3, 4, 4)
    out_c, out_l, stats = cal(g_c, g_l)
    torch.testing.assert_close(out_c, g_c)
    torch.testing.assert_close(out_l, g_l)
    assert stats['cam_lidar_ratio_before'] == pytest.approx(float(g_c.norm() / g_l.norm()), rel=1e-5)
    assert stats['cam_lidar_ratio_after'] == pytest.approx(stats['cam_lidar_ratio_before'], rel=1e-5)
