"""Non-finite losses and gradients: skipped, counted, and fatal only when they persist."""

import pytest
import torch
from torch import nn

from fuller.engine import CalibratedOptimWrapper, GuardedOptimWrapper
from fuller.testing import ContractModel, two_head_linear


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


def test_the_skip_warning_counts_iterations_as_the_console_does():
    import logging

    from mmengine.logging import MessageHub, MMLogger

    logger = MMLogger.get_instance('fuller_skip_test')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    MessageHub.get_current_instance().update_info('iter', 4)  # the fifth iteration: "Iter(train) [5/..]"
    model, ow = _wrapper()
    ow.update_params(model(torch.ones(1, 3)).sum() * float('nan'))
    logger.removeHandler(handler)
    assert any('at iteration 5' in r.getMessage() for r in records), [r.getMessage() for r in records]


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


def _nan_map_model(seed=0):
    torch.manual_seed(seed)
    return ContractModel(dict(backbone=nn.Linear(4, 4), det=nn.Linear(4, 1), map=nn.Linear(4, 1)),
                         shared=lambda p, x: p['backbone'](x),
                         losses=lambda p, f, _: {'det': {'loss_a': p['det'](f).sum()},
                                                 'map': {'loss_b': p['map'](f).sum() * float('nan')}},
                         heads=('det', 'map'))


def test_calibrated_step_skips_a_nan_task_loss():
    model = _nan_map_model()
    params = list(model.parameters())
    ow = CalibratedOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1), inter=dict(type='FullerInter'))
    before = [p.detach().clone() for p in params]
    log = model.train_step(dict(inputs=torch.randn(2, 4)), ow)
    assert ow.skipped_steps == 1 and not torch.isfinite(log['loss'])
    for p, b in zip(params, before):
        assert torch.equal(p, b)


def _toy(cls=CalibratedOptimWrapper, **kw):
    model = two_head_linear()
    params = list(model.parameters())
    ow = cls(optimizer=torch.optim.SGD(params, lr=0.1), inter=dict(type='FullerInter'), intra=None, **kw)
    return model, params, ow


def _calibrated_step(model, ow, x):
    return model.train_step(dict(inputs=x), ow)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_calibrated_step_matches_fp32(dtype):
    x = torch.randn(16, 8)
    mods32, p32, ow32 = _toy()
    init = torch.cat([q.detach().flatten() for q in p32])
    _calibrated_step(mods32, ow32, x)
    mods, p, ow = _toy(amp=dtype, device_type='cpu', init_scale=2.0**8)
    log = _calibrated_step(mods, ow, x)
    assert ow.skipped_steps == 0 and torch.isfinite(log['loss'])
    d32 = torch.cat([q.detach().flatten() for q in p32]) - init
    d = torch.cat([q.detach().flatten() for q in p]) - init
    # The same update up to the precision of the half-precision forward.
    assert torch.nn.functional.cosine_similarity(d, d32, dim=0) > (0.99 if dtype == 'bfloat16' else 0.999)
    assert d.norm() / d32.norm() == pytest.approx(1.0, abs=0.05 if dtype == 'bfloat16' else 0.01)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the fallback is for machines without CUDA')
def test_a_configs_float16_trains_in_fp32_without_cuda_and_says_so():
    """The nuScenes schedules state BEVFusion's float16; without CUDA the wrapper trains in fp32 and
    logs why (float16 on a CPU: 212 s per demo step and a NaN gradient), unless device_type is given."""
    import logging

    from fuller.testing import logged_messages

    def wrapper(**kw):
        return GuardedOptimWrapper(optimizer=torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), **kw)

    with logged_messages(logging.WARNING) as messages:
        ow = wrapper(amp='float16')
    assert ow.amp is None and ow.cast_dtype is None and not ow.scaler.is_enabled()
    assert any("amp='float16' (the config's CUDA recipe): training in fp32" in m for m in messages)
    forced = wrapper(amp='float16', device_type='cpu')
    assert forced.amp == 'float16' and forced.scaler.is_enabled()


def test_fp16_overflow_lowers_the_scale_without_counting_a_skip():
    mods, params, ow = _toy(amp='float16', device_type='cpu', init_scale=2.0**40)
    before = [p.detach().clone() for p in params]
    x = torch.randn(16, 8)
    _calibrated_step(mods, ow, x)
    assert ow.skipped_steps == 0 and ow.scaler.get_scale() < 2.0**40
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    for _ in range(60):  # each overflow halves the scale
        _calibrated_step(mods, ow, x)
    assert not torch.equal(params[0], before[0]) and ow.skipped_steps == 0
    assert 'scaler' in ow.state_dict()['fuller']


def test_gradient_accumulation_averages_calibrated_micro_batches():
    x1, x2 = torch.randn(8, 8), torch.randn(8, 8)
    # Reference: the two calibrated micro-batch updates' gradients, averaged by hand.
    mods, params, ow = _toy(CalibratedOptimWrapper)
    grads = []
    for x in (x1, x2):
        ow.optimizer.zero_grad()
        ow.step = ow.zero_grad = lambda **kw: None  # collect this micro-batch's gradients only
        _calibrated_step(mods, ow, x)
        grads.append([p.grad.clone() for p in params])
    mods, params, ow = _toy(CalibratedOptimWrapper, accumulative_counts=2)
    ow.initialize_count_status(mods, 0, 2)
    before = [p.detach().clone() for p in params]
    for x in (x1, x2):
        _calibrated_step(mods, ow, x)
    for p, b, g1, g2 in zip(params, before, *grads):
        torch.testing.assert_close(p.detach(), b - 0.1 * (g1 + g2) / 2, rtol=1e-5, atol=1e-6)


def test_logged_rule_weights_reconstruct_the_combined_gradient():
    x = torch.randn(16, 8)
    mods, _, ow = _toy(CalibratedOptimWrapper)
    ow.inter = None  # sum: weight 1 per task (a diagnostic from fp32 normal equations: ~1e-5)
    log = _calibrated_step(mods, ow, x)
    assert log['calib/weight_det'] == pytest.approx(1.0, abs=1e-4)
    assert log['calib/weight_map'] == pytest.approx(1.0, abs=1e-4)
    # FULLER's rule equalises magnitudes: the small map gradient gets a much larger weight.
    mods, _, ow = _toy(CalibratedOptimWrapper)
    log = _calibrated_step(mods, ow, x)
    assert log['calib/weight_map'] > 10 * log['calib/weight_det'] > 0


@pytest.mark.parametrize('amp', ['bfloat16', 'float16'])
def test_naive_amp_wrapper_keeps_the_guard(amp):
    """The naive baseline under --amp (GuardedOptimWrapper(amp=...)) still skips and counts a
    NaN step, bounds consecutive skips, and steps under autocast otherwise."""
    model, ow = _wrapper(max_consecutive_skips=1, amp=amp, device_type='cpu', init_scale=2.0**8)
    before = model.weight.detach().clone()
    with ow.optim_context(model):
        loss = model(torch.ones(1, 3)).sum() * float('nan')
    ow.update_params(loss)
    assert ow.skipped_steps == 1 and torch.equal(model.weight, before)
    with ow.optim_context(model):
        out = model(torch.ones(1, 3))
    assert out.dtype == getattr(torch, amp)  # the forward ran under autocast
    ow.update_params(out.float().sum())
    assert not torch.equal(model.weight, before) and ow._consecutive_skips == 0
    # the update equals the fp32 one up to half-precision rounding (the scale is undone)
    ref_model, ref = _wrapper()
    ref.update_params(ref_model(torch.ones(1, 3)).sum())
    assert torch.allclose(model.weight, ref_model.weight, atol=1e-2)
    for _ in range(2):
        if _ == 1:
            with pytest.raises(FloatingPointError, match='non-finite steps in a row'):
                ow.update_params(torch.tensor(float('nan')))
        else:
            ow.update_params(torch.tensor(float('nan')))
    state = ow.state_dict()['fuller']
    assert state['skipped_steps'] == 3
    assert ('scaler' in state) == (amp == 'float16')


def test_unknown_amp_dtype_is_refused():
    with pytest.raises(ValueError, match="optim_wrapper.amp must be None, 'float16', 'bfloat16' or 'auto'"):
        _wrapper(amp='fp8')


def test_warmup_counts_optimizer_updates_not_micro_batches_or_skips():
    mods, params, ow = _toy(CalibratedOptimWrapper, warmup_iters=1, accumulative_counts=2)
    ow.initialize_count_status(mods, 0, 6)
    x = torch.randn(16, 8)
    logs = [_calibrated_step(mods, ow, x) for _ in range(2)]  # two micro-batches: one update
    assert ow._updates == 1
    assert logs[0]['calib/weight_det'] == logs[0]['calib/weight_map'] == 1.0  # warm-up: plain sum
    assert logs[1]['calib/weight_det'] == 1.0  # still the first update
    log = _calibrated_step(mods, ow, x)  # the second update calibrates
    assert log['calib/weight_det'] != pytest.approx(1.0)
    before = ow._updates
    _calibrated_step(mods, ow, torch.full((16, 8), float('nan')))  # skipped: not an update
    assert ow._updates == before and ow.skipped_steps == 1


def test_heads_sharing_modules_need_retained_task_graphs():
    torch.manual_seed(0)

    def losses(p, f, _):
        common = torch.tanh(p['trunk'](f))  # computed once, used by both tasks
        return {'det': {'loss': p['det'](common).pow(2).mean()}, 'map': {'loss': p['map'](common).pow(2).mean()}}

    model = ContractModel(dict(backbone=nn.Linear(4, 4), trunk=nn.Linear(4, 4), det=nn.Linear(4, 1),
                               map=nn.Linear(4, 1)), shared=lambda p, x: p['backbone'](x), losses=losses,
                          heads=('trunk', 'det', 'map'))
    params, trunk = list(model.parameters()), model.parts['trunk']

    def step(ow):
        return model.train_step(dict(inputs=torch.randn(3, 4)), ow)

    ow = CalibratedOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1), inter=dict(type='FullerInter'))
    with pytest.raises(RuntimeError, match="task 'map' shares computation.*retain_task_graphs=True"):
        step(ow)
    ow = CalibratedOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1), inter=dict(type='FullerInter'),
                                retain_task_graphs=True)
    before = trunk.weight.detach().clone()
    step(ow)
    assert not torch.equal(trunk.weight, before)
