import pytest
import torch

from fuller.calibration import CalibratedModel, ModalityCalibrator, ModalityStage, TaskOutputs, build_intra


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
    stage = ModalityStage(ModalityCalibrator())
    c2, l2 = stage(cam, lidar)
    with pytest.raises(RuntimeError, match='backward has not reached'):
        stage.stats()  # read too early: an error, not an empty dict
    torch.testing.assert_close(c2, cam)
    torch.testing.assert_close(l2, lidar)
    w_c, w_l = torch.randn_like(cam), 100 * torch.randn_like(lidar)
    ((c2 * w_c).sum() + (l2 * w_l).sum()).backward()
    stats = stage.stats()
    torch.testing.assert_close(cam.grad.norm(), lidar.grad.norm())
    cos = torch.nn.functional.cosine_similarity(cam.grad.flatten(), w_c.flatten(), dim=0)
    torch.testing.assert_close(cos, torch.tensor(1.0))
    assert stats['cam_lidar_ratio_before'] < 0.1
    assert abs(stats['cam_lidar_ratio_after'] - 1.0) < 1e-5
    with pytest.raises(RuntimeError, match='second camera/LiDAR pair'):
        stage(cam, lidar)
    assert ModalityStage(ModalityCalibrator()).stats() == {}  # a model without a pair: nothing measured


def test_norms_are_exact_on_non_contiguous_views():
    """The fuser hands the pair as slices of one gradient: their norms, and the calibrated pair's
    equality, hold to 1e-7 (per-row fp32 norms combined in float64), not to a single fp32 norm's ~5e-4."""
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(4, 336, 90, 90, generator=gen) * torch.linspace(0.01, 100, 90)
    g_cam, g_lidar = g[:, :80], g[:, 80:]
    assert not g_cam.is_contiguous() or not g_lidar.is_contiguous() or g_cam.stride() != g_lidar.stride()
    cal = ModalityCalibrator(target='mean')
    for view in (g_cam, g_cam.transpose(-1, -2)):
        assert float(cal._norm(view)) == pytest.approx(float(g_cam.double().norm()), rel=2e-7)
    assert abs(float(g_cam.norm()) / float(g_cam.double().norm()) - 1) > 1e-5  # what a single fp32 norm gives
    out_c, out_l, stats = cal(g_cam, g_lidar)
    n_c, n_l = out_c.double().norm(), out_l.double().norm()
    assert float(n_c / n_l) == pytest.approx(1.0, rel=1e-6)
    assert stats['cam_lidar_ratio_before'] == pytest.approx(float(g_cam.double().norm() / g_lidar.double().norm()),
                                                            rel=5e-7)


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


class _ToyFusion(torch.nn.Module):
    """Camera and LiDAR branches -> concat fuser -> shared feature -> two heads in float64: a
    :class:`~fuller.calibration.CalibratedModel`."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.cam = torch.nn.Linear(6, 4).double()
        self.lidar = torch.nn.Linear(5, 3).double()
        self.fuser = torch.nn.Linear(7, 8).double()
        self.det = torch.nn.Linear(8, 1).double()
        self.map = torch.nn.Linear(8, 2).double()
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        # Detection reads mostly the camera half of the shared feature, the map the LiDAR half,
        # so the two tasks' camera/LiDAR gradient ratios differ.
        with torch.no_grad():
            self.fuser.weight[:4, 4:] *= 0.05
            self.fuser.weight[4:, :4] *= 0.05
            self.det.weight[:, 4:] *= 0.05
            self.map.weight[:, :4] *= 0.05
        self.data_preprocessor = lambda data, training: data

    def task_parameters(self):
        return [*self.det.parameters(), *self.map.parameters()]

    def pair(self, x_cam, x_lidar):
        return torch.tanh(self.cam(x_cam)), torch.tanh(self.lidar(x_lidar))

    def losses(self, feat):
        return {'det': {'loss': (self.det(feat) ** 2).mean()}, 'map': {'loss': (self.map(feat) - 1).pow(2).mean() * 30}}

    def forward(self, x_cam, x_lidar, mode='tasks', modality=None):
        c, l = self.pair(x_cam, x_lidar)
        if modality is not None:
            c, l = modality(c, l)
        shared = torch.tanh(self.fuser(torch.cat([c, l], -1)))
        leaf = shared.detach().requires_grad_(True)
        return TaskOutputs(self.losses(leaf), shared, leaf)


def _step(model, intra, data):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import fuller.engine  # noqa: F401 - registers the wrappers

    init_default_scope('fuller')
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    ow = build_optim_wrapper(model, dict(type='CalibratedOptimWrapper', optimizer=dict(type='SGD', lr=1.0),
                                         inter=dict(type='Sum'), intra=intra))
    assert isinstance(model, CalibratedModel)  # the declared contract
    log = ow.train_step(model, data)
    return {k: before[k] - v.detach() for k, v in model.named_parameters()}, log  # = the gradients


def test_per_task_modality_calibration_matches_a_reference():
    """Each task's gradient at the (camera, LiDAR) pair is balanced on its own and the results
    added: checked against a direct computation; decoder and heads get the plain gradients."""
    gen = torch.Generator().manual_seed(1)
    data = dict(x_cam=torch.randn(16, 6, generator=gen, dtype=torch.float64),
                x_lidar=torch.randn(16, 5, generator=gen, dtype=torch.float64))
    plain, _ = _step(_ToyFusion(), dict(type='ModalityCalibrator', target='none'), data)
    per_task, log = _step(_ToyFusion(), dict(type='ModalityCalibrator', target='mean', per_task=True), data)
    scalar, _ = _step(_ToyFusion(), dict(type='ModalityCalibrator', target='mean'), data)

    # Reference: per-task pair gradients by autograd, each pair to its mean norm, then summed.
    ref = _ToyFusion()
    c, l = ref.pair(**data)
    shared = torch.tanh(ref.fuser(torch.cat([c, l], -1)))
    cal_c, cal_l = torch.zeros_like(c), torch.zeros_like(l)
    for loss in ref.losses(shared).values():
        gc, gl = torch.autograd.grad(loss['loss'], [c, l], retain_graph=True)
        m = (gc.norm() + gl.norm()) / 2
        cal_c, cal_l = cal_c + gc * m / gc.norm(), cal_l + gl * m / gl.norm()
    want = dict(zip(['cam.weight', 'cam.bias', 'lidar.weight', 'lidar.bias'],
                    torch.autograd.grad((c * cal_c).sum() + (l * cal_l).sum(),
                                        [ref.cam.weight, ref.cam.bias, ref.lidar.weight, ref.lidar.bias])))
    # (the step keeps the task-gradient matrix in float32: agreement to float32 precision)
    for k, g in want.items():
        torch.testing.assert_close(per_task[k], g, rtol=1e-5, atol=1e-6)
    for k in ('fuser.weight', 'fuser.bias', 'det.weight', 'map.weight'):
        torch.testing.assert_close(per_task[k], plain[k], rtol=1e-5, atol=1e-6)
    # It changes directions within a branch, which a scalar per branch cannot.
    cos = torch.nn.functional.cosine_similarity(per_task['cam.weight'].flatten(), scalar['cam.weight'].flatten(), dim=0)
    assert cos < 0.999
    assert log['calib/direction_cos_cam'] < 0.999 and abs(log['calib/cam_lidar_ratio_after'] - 1) > 1e-6
    assert {'calib/cam_lidar_ratio_before_det', 'calib/cam_lidar_ratio_before_map'} <= set(log)


def test_per_task_with_target_none_is_the_plain_step():
    gen = torch.Generator().manual_seed(2)
    data = dict(x_cam=torch.randn(8, 6, generator=gen, dtype=torch.float64),
                x_lidar=torch.randn(8, 5, generator=gen, dtype=torch.float64))
    plain, _ = _step(_ToyFusion(), dict(type='ModalityCalibrator', target='none'), data)
    per_task, _ = _step(_ToyFusion(), dict(type='ModalityCalibrator', target='none', per_task=True), data)
    for k in plain:
        torch.testing.assert_close(per_task[k], plain[k], rtol=1e-5, atol=1e-6)


def test_float64_gradients_keep_float64_norms():
    g = torch.randn(3, 5, 7, dtype=torch.float64)
    assert ModalityCalibrator()._norm(g).dtype == torch.float64
    assert float(ModalityCalibrator()._norm(g)) == pytest.approx(float(g.norm()), rel=1e-14)


def test_the_calibrated_step_releases_its_modality_stage():
    """Each step's ModalityStage (and the BEV pair it holds) is freed with the step: the pair's
    autograd node refers to its stage weakly. A strong reference made a cycle through autograd's
    C++ graph that Python's collector cannot see: 8 MB per step of the demo model, 7 GB over the
    main job."""
    import gc

    from mmengine.model import BaseModel
    from torch import nn

    from fuller.calibration import TaskOutputs
    from fuller.calibration.intra import ModalityStage
    from fuller.engine import CalibratedOptimWrapper

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.cam, self.lidar, self.fuse = nn.Linear(4, 6), nn.Linear(3, 6), nn.Linear(12, 8)
            self.det, self.map = nn.Linear(8, 2), nn.Linear(8, 3)

        def forward(self, inputs, data_samples=None, mode='tasks', modality=None):
            cam, lidar = modality(self.cam(inputs[:, :4]), self.lidar(inputs[:, 4:]))
            shared = torch.tanh(self.fuse(torch.cat([cam, lidar], 1)))
            leaf = shared.detach().requires_grad_(True)
            return TaskOutputs({'det': {'loss': self.det(leaf).pow(2).mean()},
                                'map': {'loss': self.map(leaf).pow(2).mean()}}, shared, leaf)

    model = Toy()
    ow = CalibratedOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                                inter=dict(type='FullerInter'), intra=dict(type='ModalityCalibrator'))
    for _ in range(3):
        log = ow.train_step(model, dict(inputs=torch.randn(5, 7)))
        assert abs(log['calib/cam_lidar_ratio_after'] - 1.0) < 1e-4
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, ModalityStage)]


class _ToyFusionAux(_ToyFusion):
    """:class:`_ToyFusion` whose camera branch has an auxiliary loss (as the camera's depth
    supervision): it reaches the branch directly, not through the modality pair."""

    def forward(self, x_cam, x_lidar, mode='tasks', modality=None):
        out = super().forward(x_cam, x_lidar, mode, modality)
        aux = {'camera.loss_depth': (torch.tanh(self.cam(x_cam)) - 0.5).pow(2).mean() * 3}
        return TaskOutputs(out.losses, out.shared, out.leaf, aux)


@pytest.mark.parametrize('target', ['none', 'mean'])
def test_auxiliary_losses_join_the_backward_uncalibrated(target):
    """A branch's auxiliary loss (TaskOutputs.aux) adds its own gradient to that branch's
    parameters, neither weighted by the task rule nor rescaled by the modality calibration; every
    other parameter's update, and the modality diagnostics, are those of the step without it."""
    gen = torch.Generator().manual_seed(3)
    data = dict(x_cam=torch.randn(8, 6, generator=gen, dtype=torch.float64),
                x_lidar=torch.randn(8, 5, generator=gen, dtype=torch.float64))
    intra = dict(type='ModalityCalibrator', target=target)
    base, base_log = _step(_ToyFusion(), intra, data)
    with_aux, log = _step(_ToyFusionAux(), intra, data)
    ref = _ToyFusionAux()
    aux = ref(**data).aux['camera.loss_depth']
    want = dict(zip(['cam.weight', 'cam.bias'], torch.autograd.grad(aux, [ref.cam.weight, ref.cam.bias])))
    for k in base:
        torch.testing.assert_close(with_aux[k], base[k] + want.get(k, 0), rtol=1e-5, atol=1e-7)
    assert log['camera.loss_depth'] == pytest.approx(float(aux))
    assert log['loss'] == pytest.approx(float(base_log['loss']) + float(aux))
    assert log['calib/cam_lidar_ratio_before'] == pytest.approx(base_log['calib/cam_lidar_ratio_before'])
