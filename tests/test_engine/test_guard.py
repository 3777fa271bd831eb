"""Non-finite losses and gradients: skipped, counted, and fatal only when they persist."""

import pytest
import torch
from torch import nn

from fuller.engine import CalibratedOptimWrapper, GuardedOptimWrapper


def _wrapper(cls=GuardedOptimWrapper, **kw):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ow = cls(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kw)
    return model, ow


def test_nan_loss_is_skipped_and_counted():
    model, ow = _wrapper(max_consecutive_skips=3)
    before = [p.detach().clone() for p in model.parameters()]
    ow.update_params(model(torch.ones(1, 3)).sum() * float('nan'))
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b) and p.grad is None
    assert ow.skipped_steps == 1
    ow.update_params(model(torch.ones(1, 3)).sum())
    assert not torch.equal(model.weight, before[0])
    assert ow._consecutive_skips == 0 and ow.skipped_steps == 1


def test_inf_gradient_discards_the_step():
    model, ow = _wrapper()
    before = model.weight.detach().clone()
    x = torch.zeros(1, 3)
    loss = torch.sqrt(model(x) - model.bias.detach()).sum()  # sqrt(0): finite loss, infinite gradient
    assert torch.isfinite(loss)
    ow.update_params(loss)
    assert torch.equal(model.weight, before)
    assert all(p.grad is None or not p.grad.abs().sum() for p in model.parameters())
    assert ow.skipped_steps == 1


def test_persistent_nan_stops_training_with_a_clear_message():
    model, ow = _wrapper(max_consecutive_skips=2)
    for _ in range(2):
        ow.update_params(torch.tensor(float('inf')))
    with pytest.raises(FloatingPointError, match='3 non-finite steps in a row.*max_consecutive_skips'):
        ow.update_params(torch.tensor(float('nan')))


def test_skip_counter_is_saved_with_the_optimizer_state():
    model, ow = _wrapper()
    ow.update_params(torch.tensor(float('nan')))
    state = ow.state_dict()
    _, fresh = _wrapper()
    fresh.load_state_dict(state)
    assert fresh.skipped_steps == 1


def test_calibrated_step_skips_a_nan_task_loss():
    torch.manual_seed(0)
    backbone, head_a, head_b = nn.Linear(4, 4), nn.Linear(4, 1), nn.Linear(4, 1)
    params = [*backbone.parameters(), *head_a.parameters(), *head_b.parameters()]
    ow = CalibratedOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1), inter=dict(type='FullerInter'))
    before = [p.detach().clone() for p in params]
    shared = backbone(torch.randn(2, 4))
    leaf = shared.detach().requires_grad_(True)
    groups = {'det': {'loss_a': head_a(leaf).sum()}, 'map': {'loss_b': head_b(leaf).sum() * float('nan')}}
    log = ow.calibrated_update(groups, shared, leaf)
    assert ow.skipped_steps == 1 and not torch.isfinite(log['loss'])
    for p, b in zip(params, before):
        assert torch.equal(p, b)
