"""Mixed precision named once for training and evaluation: ``amp=None`` (fp32), ``'float16'``,
``'bfloat16'`` or ``'auto'``, as ``optim_wrapper.amp`` and the evaluation loops
(:class:`AmpTestLoop`, :class:`AmpValLoop`) take it.

``'auto'`` picks bfloat16 where the device has native bf16 units (CUDA devices with bf16; CPUs
with AVX-512 BF16 or AMX) and fp32 elsewhere (:func:`fuller.utils.auto_precision`), and logs why.
``'float16'`` is the nuScenes configs' (BEVFusion's) CUDA recipe: with no CUDA device, and no
``device_type`` given, it runs in fp32 and logs so (PyTorch's float16 CPU kernels made one demo
training step 212 s with a NaN gradient); ``device_type='cpu'`` runs float16 on the CPU all the
same (the tests do).
"""

import logging

import torch
from mmengine.logging import print_log
from mmengine.runner.loops import TestLoop, ValLoop, _update_losses

from fuller.registry import LOOPS
from fuller.utils import auto_precision

AMP_DTYPES = {None: None, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def resolve_amp(amp: str | None, device_type: str | None, key: str, doing: str) -> tuple[str, str | None]:
    """``(device_type, amp)``: the autocast device (``device_type``, else ``'cuda'`` when there
    is one, else ``'cpu'``) and the precision ``amp`` resolves to on it (``None``, ``'float16'``
    or ``'bfloat16'``), logged where it is not what was asked. ``key`` names the setting and
    ``doing`` the work (``'training'``, ``'evaluating'``) in errors and logs."""
    if amp not in (*AMP_DTYPES, 'auto'):
        raise ValueError(f"{key} must be None, 'float16', 'bfloat16' or 'auto', got {amp!r}")
    device = device_type or ('cuda' if torch.cuda.is_available() else 'cpu')
    if amp == 'auto':
        amp, why = auto_precision(device_type=device)
        print_log(f"{key}='auto': {amp or 'fp32'}, since {why}", logger='current')
    elif amp == 'float16' and device_type is None and device == 'cpu':
        amp = None
        print_log(f"{key}='float16' (the config's CUDA recipe): {doing} in fp32, since there is no CUDA device "
                  "and float16 on a CPU is slow and unstable; 'auto' picks bf16 where the CPU has bf16 units",
                  logger='current', level=logging.WARNING)
    return device, amp


class _AmpLoopMixin:
    """mmengine's ``run_iter`` (``TestLoop``'s or ``ValLoop``'s, by ``_step`` and ``_hook``) under
    ``torch.autocast`` in the resolved precision: mmengine's own ``autocast(enabled=self.fp16)``
    inside it would turn an outer autocast off."""

    _step = 'test_step'
    _hook = 'test'

    def _init_amp(self, amp: str | None, device_type: str | None, key: str) -> None:
        self.device_type, self.amp = resolve_amp(amp, device_type, key, 'evaluating')
        self.cast_dtype = AMP_DTYPES[self.amp]

    @torch.no_grad()
    def run_iter(self, idx, data_batch) -> None:
        self.runner.call_hook(f'before_{self._hook}_iter', batch_idx=idx, data_batch=data_batch)
        with torch.autocast(self.device_type, dtype=self.cast_dtype, enabled=self.cast_dtype is not None):
            outputs = getattr(self.runner.model, self._step)(data_batch)
        outputs, losses = _update_losses(outputs, getattr(self, f'{self._hook}_loss'))
        setattr(self, f'{self._hook}_loss', losses)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(f'after_{self._hook}_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)


@LOOPS.register_module()
class AmpTestLoop(_AmpLoopMixin, TestLoop):
    """mmengine's ``TestLoop`` with its precision given as ``optim_wrapper.amp`` is
    (:func:`resolve_amp`): ``test_cfg = dict(type='AmpTestLoop', amp='float16')`` evaluates under
    float16 autocast on CUDA, as BEVFusion's ``tools/test.py`` does (``wrap_fp16_model`` when the
    config has ``fp16``), and in fp32 without CUDA. (mmengine's ``fp16=True`` is bf16 on a CPU.)"""

    def __init__(self, runner, dataloader, evaluator, amp: str | None = None, device_type: str | None = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=False)
        self._init_amp(amp, device_type, 'test_cfg.amp')


@LOOPS.register_module()
class AmpValLoop(_AmpLoopMixin, ValLoop):
    """mmengine's ``ValLoop`` with the precision of :class:`AmpTestLoop` (``val_cfg.amp``)."""

    _step = 'val_step'
    _hook = 'val'

    def __init__(self, runner, dataloader, evaluator, amp: str | None = None, device_type: str | None = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16=False)
        self._init_amp(amp, device_type, 'val_cfg.amp')
