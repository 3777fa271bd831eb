import pytest
import torch
from torch import nn

from fuller.calibration import DWA, GradNorm, UncertaintyWeighting, build_weighting


def test_dwa_equal_until_two_windows_then_favours_the_slow_task():
    dwa = DWA(temperature=2.0, window=2)
    ws = []
    for k in range(8):
        # task 0 loss drops fast, task 1 stays
        ws.append(dwa(torch.tensor([1.0 / (k + 1), 1.0])))
    for w in ws[:4]:
        torch.testing.assert_close(w, torch.ones(2))
    for w in ws[4:]:
        assert w.sum().item() == pytest.approx(2.0) and w[1] > w[0]


def test_uncertainty_weights_converge_to_inverse_losses():
    uw = UncertaintyWeighting(lr=0.05)
    for _ in range(2000):
        w = uw(torch.tensor([4.0, 0.25]))
    torch.testing.assert_close(w, torch.tensor([0.25, 4.0]), rtol=1e-2, atol=1e-3)


def test_gradnorm_balances_gradient_norms():
    gn = GradNorm(alpha=1.5, lr=0.01)
    g = torch.stack([torch.full((10,), 1.0), torch.full((10,), 0.1)])
    for _ in range(3000):
        w = gn(torch.tensor([1.0, 1.0]), g)
    norms = w * g.norm(dim=1)
    assert norms[0] / norms[1] == pytest.approx(1.0, abs=0.1)
    assert w.sum().item() == pytest.approx(2.0, abs=1e-4)


def test_state_round_trip_and_bad_config():
    dwa = DWA(window=1)
    for k in range(3):
        dwa(torch.tensor([1.0 / (k + 1), 1.0]))
    other = DWA(window=1)
    other.load_state_dict(dwa.state_dict())
    torch.testing.assert_close(other(torch.tensor([0.2, 1.0])), dwa(torch.tensor([0.2, 1.0])))
    with pytest.raises(ValueError, match='unknown loss weighting'):
        build_weighting(dict(type='Uncertainty'))


def test_calibrated_wrapper_applies_the_weighting():
    from fuller.engine import CalibratedOptimWrapper
    from fuller.testing import ContractModel

    torch.manual_seed(0)
    model = ContractModel(dict(backbone=nn.Linear(4, 4), det=nn.Linear(4, 1), map=nn.Linear(4, 1)),
                          shared=lambda p, x: p['backbone'](x),
                          losses=lambda p, f, _: {'det': {'loss_a': p['det'](f).pow(2).sum()},
                                                  'map': {'loss_b': p['map'](f).pow(2).sum()}},
                          heads=('det', 'map'))
    ow = CalibratedOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                weighting=dict(type='UncertaintyWeighting', init=1.0))
    log = model.train_step(dict(inputs=torch.randn(2, 4)), ow)
    assert log['calib/loss_weight_det'] == pytest.approx(float(torch.exp(torch.tensor(-1.0))))
    assert 'weighting' in ow.state_dict()['fuller']
