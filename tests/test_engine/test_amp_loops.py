"""Evaluation in the precision a config names (``AmpTestLoop`` / ``AmpValLoop``, ``amp=...`` as
``optim_wrapper.amp``): BEVFusion evaluates in float16 (its ``tools/test.py`` calls
``wrap_fp16_model`` when the config has ``fp16``; ``configs/default.yaml`` has), so the nuScenes
schedules do; without CUDA they evaluate in fp32 and say so."""

import pytest
import torch

from fuller.engine import FullerRunner, resolve_amp
from fuller.testing import logged_messages, tiny_config


def _resolve(*args):
    with logged_messages() as lines:
        return resolve_amp(*args), lines


def test_resolve_amp_names_the_key_and_logs_what_changed():
    with pytest.raises(ValueError, match="test_cfg.amp must be None, 'float16', 'bfloat16' or 'auto', got 'fp16'"):
        resolve_amp('fp16', None, 'test_cfg.amp', 'evaluating')
    assert _resolve('bfloat16', 'cpu', 'test_cfg.amp', 'evaluating') == (('cpu', 'bfloat16'), [])
    assert _resolve(None, 'cpu', 'test_cfg.amp', 'evaluating') == (('cpu', None), [])
    assert _resolve('float16', 'cpu', 'test_cfg.amp', 'evaluating') == (('cpu', 'float16'), [])  # asked for
    (device, amp), lines = _resolve('auto', 'cpu', 'val_cfg.amp', 'evaluating')
    from fuller.utils import auto_precision
    want, why = auto_precision(device_type='cpu')
    assert (device, amp) == ('cpu', want) and any(f"val_cfg.amp='auto': {want or 'fp32'}, since {why}" in x
                                                  for x in lines)
    if not torch.cuda.is_available():
        (device, amp), lines = _resolve('float16', None, 'test_cfg.amp', 'evaluating')
        assert (device, amp) == ('cpu', None)
        assert any("test_cfg.amp='float16' (the config's CUDA recipe): evaluating in fp32" in x for x in lines)


def _seen_precision(model, loop) -> list:
    """Run one iteration of ``loop`` and record the autocast state inside the fuser."""
    seen = []
    hook = model.fuser.register_forward_pre_hook(
        lambda m, a: seen.append((torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'))))
    try:
        batch = next(iter(loop.dataloader))
        loop.run_iter(0, batch)
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize('which', ['test', 'val'])
def test_amp_loops_run_the_model_under_the_named_precision(demo_root, tmp_path, which):
    """One evaluation iteration through the real runner and model: under bf16 autocast with
    ``amp='bfloat16'``, without autocast with ``amp=None``; the predictions reach the evaluator
    either way."""
    cfg = tiny_config(demo_root, str(tmp_path))
    loop_type = 'AmpTestLoop' if which == 'test' else 'AmpValLoop'
    cfg[f'{which}_cfg'] = dict(type=loop_type, amp='bfloat16', device_type='cpu')
    runner = FullerRunner.from_cfg(cfg)
    loop = runner.test_loop if which == 'test' else runner.val_loop
    assert type(loop).__name__ == loop_type and loop.cast_dtype == torch.bfloat16
    model = runner.model
    model.eval()
    runner.call_hook(f'before_{which}')
    runner.call_hook(f'before_{which}_epoch')
    assert _seen_precision(model, loop) == [(True, torch.bfloat16)]
    loop.cast_dtype = None
    assert _seen_precision(model, loop) == [(False, torch.get_autocast_dtype('cpu'))]
    results = [r for m in loop.evaluator.metrics for r in m.results]
    assert len(results) == 2 * len(loop.evaluator.metrics)  # each iteration's prediction, to every metric
