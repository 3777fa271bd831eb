"""The calibrated optimizer wrapper: multi-level gradient calibration inside the step."""

from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper
from torch import Tensor

from fuller.calibration import build_inter_rule, build_intra, build_weighting
from fuller.registry import OPTIM_WRAPPERS


def _any_rank(flag: bool, device: torch.device) -> bool:
    """``flag`` OR-ed over all ranks (so every rank skips the same steps under DDP)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


@OPTIM_WRAPPERS.register_module()
class GuardedOptimWrapper(OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that skips steps with a non-finite loss or gradient.

    A NaN/Inf loss skips the backward; a NaN/Inf gradient (checked before the optimizer step,
    after any DDP reduction) discards the accumulated gradients and skips the step. Each skip
    is logged with the iteration and counted (``train/skipped_steps`` in the message hub, and
    in the checkpoint); after ``max_consecutive_skips`` skips in a row training stops with a
    :class:`FloatingPointError`. Under DDP the loss check is OR-ed over ranks so all ranks
    skip together. A skipped micro-batch under gradient accumulation does not count towards
    ``accumulative_counts``.

    **Mixed precision** (``amp='float16'`` or ``'bfloat16'``; ``tools/train.py --amp`` sets it):
    the forward runs under ``torch.autocast``. With float16 a dynamic loss scale
    (``torch.amp.GradScaler``) protects small gradients: gradients are unscaled before
    clipping and the step, and an fp16 overflow lowers the scale and skips the step, as
    GradScaler does, without counting as a non-finite step; a genuine NaN/Inf loss is still
    counted and bounded by ``max_consecutive_skips``. bfloat16 needs no loss scale.

    Args:
        max_consecutive_skips: stop after this many skipped steps in a row (0: stop at the first).
        check_grads: also check the gradients before each step (one fused norm over all of them).
        amp: ``None`` (full precision), ``'float16'`` or ``'bfloat16'``.
        init_scale: initial loss scale (float16).
        growth_interval: steps without overflow before the scale doubles (float16).
        device_type: autocast device (``'cuda'`` when available, else ``'cpu'``).
        **kwargs: :class:`OptimWrapper` arguments.
    """

    def __init__(self, max_consecutive_skips: int = 10, check_grads: bool = True, amp: str | None = None,
                 init_scale: float = 2.0**16, growth_interval: int = 2000, device_type: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if max_consecutive_skips < 0:
            raise ValueError(f'optim_wrapper.max_consecutive_skips must be >= 0, got {max_consecutive_skips}')
        dtypes = {None: None, 'float16': torch.float16, 'bfloat16': torch.bfloat16}
        if amp not in dtypes:
            raise ValueError(f"optim_wrapper.amp must be None, 'float16' or 'bfloat16', got {amp!r}")
        self.max_consecutive_skips = max_consecutive_skips
        self.check_grads = check_grads
        self.skipped_steps = 0
        self._consecutive_skips = 0
        self.cast_dtype = dtypes[amp]
        self.device_type = device_type or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=init_scale, growth_interval=growth_interval,
                                           enabled=self.cast_dtype == torch.float16)
        if self.scaler.is_enabled():
            self.check_grads = False  # the scaler finds overflowing gradients itself

    @contextmanager
    def optim_context(self, model):
        cast = nullcontext() if self.cast_dtype is None else torch.autocast(self.device_type, dtype=self.cast_dtype)
        with super().optim_context(model), cast:
            yield

    def _scale(self) -> float:
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def backward(self, loss: Tensor, **kwargs) -> None:
        if not self.scaler.is_enabled():
            return super().backward(loss, **kwargs)
        self.scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        if not self.scaler.is_enabled():
            return super().step(**kwargs)
        if self.clip_grad_kwargs:
            self.scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.scaler.step(self.optimizer, **kwargs)
        self.scaler.update()

    def _skip(self, what: str, detail: str = '') -> None:
        self.skipped_steps += 1
        self._consecutive_skips += 1
        hub = MessageHub.get_current_instance()
        it = hub.get_info('iter', None)
        hub.update_scalar('train/skipped_steps', self.skipped_steps)
        MMLogger.get_current_instance().warning(
            f'non-finite {what} at iteration {it}{": " + detail if detail else ""}; step skipped '
            f'({self._consecutive_skips} in a row, {self.skipped_steps} in total)')
        if self._consecutive_skips > self.max_consecutive_skips:
            raise FloatingPointError(
                f'training stopped: {self._consecutive_skips} non-finite steps in a row (last: {what} at iteration '
                f'{it}{", " + detail if detail else ""}); raise optim_wrapper.max_consecutive_skips, lower the '
                f'learning rate or check the data')

    def loss_is_finite(self, loss: Tensor, detail=None) -> bool:
        """Check (over all ranks) that ``loss`` is finite; log and count a skip if not.

        ``detail``: a callable returning the text for the log, called only for a bad loss.
        """
        bad = _any_rank(not bool(torch.isfinite(loss.detach()).all()), loss.device)
        if bad:
            self._skip('loss', detail() if detail is not None else f'loss={float(loss.detach()):g}')
        return not bad

    def _grads_finite(self) -> bool:
        grads = [p.grad for g in self.optimizer.param_groups for p in g['params'] if p.grad is not None]
        if not grads:
            return True
        norms = torch._foreach_norm(grads)
        return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())

    def update_params(self, loss: Tensor, step_kwargs: dict | None = None, zero_kwargs: dict | None = None) -> None:
        if self.loss_is_finite(loss):
            self._backward_and_step(loss, step_kwargs, zero_kwargs)

    def _backward_and_step(self, loss: Tensor, step_kwargs: dict | None = None,
                           zero_kwargs: dict | None = None) -> None:
        """Backward of an already-checked loss; step unless the gradients are non-finite."""
        self.backward(self.scale_loss(loss))
        if self.should_update():
            if self.check_grads and not self._grads_finite():
                self.zero_grad(**(zero_kwargs or {}))
                self._skip('gradient')
                return
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))
            self._consecutive_skips = 0

    def state_dict(self) -> dict:
        state = super().state_dict()
        state['fuller'] = self._extra_state()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop('fuller', None)
        super().load_state_dict(state_dict)
        if extra:
            self._load_extra_state(extra)

    def _extra_state(self) -> dict:
        state = {'skipped_steps': self.skipped_steps}
        if self.scaler.is_enabled():
            state['scaler'] = self.scaler.state_dict()
        return state

    def _load_extra_state(self, extra: dict) -> None:
        self.skipped_steps = int(extra.get('skipped_steps', 0))
        if self.scaler.is_enabled() and extra.get('scaler'):
            self.scaler.load_state_dict(extra['scaler'])


@OPTIM_WRAPPERS.register_module()
class CalibratedOptimWrapper(GuardedOptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that applies FULLER's gradient calibration.

    ``calibrated_update`` receives the per-task loss groups computed on a detached leaf
    copy ``F'`` of the shared feature ``F``. For each task ``t`` one backward through that
    task's head only gives both ``g_t = d(w_t L_t)/dF'`` and the head's parameter gradients
    ``h_t``. The ``inter`` rule combines the ``g_t`` into ``g``, and **one** backward of the
    surrogate ``<F, g> + sum_t <theta_heads, h_t>`` (``h_t`` detached) puts ``g`` through the
    backbone and ``h_t`` on the head parameters, so every parameter gradient arrives in a
    single backward (DDP reduces each once) and no head is traversed twice. The ``intra``
    calibrator is installed on the model and rescales the camera/LiDAR gradients inside that
    backward. Gradient accumulation, clipping and the step are those of the parent class.

    Args:
        inter: inter-task rule config (``dict(type='FullerInter')``, ``dict(type='UPGrad')``,
            ...); ``None`` sums the task gradients.
        intra: modality calibrator config (``dict(type='ModalityCalibrator', target='mean')``);
            ``None`` switches it off.
        task_weights: static loss weight per task, e.g. ``dict(det=1.0, map=1.0)``.
        weighting: dynamic loss weighting applied on top of them, before the rule
            (``dict(type='DWA' | 'UncertaintyWeighting' | 'GradNorm', ...)``); ``None``: none.
            Like the calibration statistics, its state is per rank under DDP.
        warmup_iters: plain summed gradients for this many updates before calibrating.
        **kwargs: :class:`GuardedOptimWrapper` arguments (``max_consecutive_skips``) and
            :class:`OptimWrapper` ones (``optimizer``, ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self, inter: dict | None = None, intra: dict | None = None, task_weights: dict | None = None,
                 weighting: dict | None = None, warmup_iters: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inter = build_inter_rule(inter)
        self.intra = build_intra(intra)
        self.weighting = build_weighting(weighting)
        self.task_weights = dict(task_weights or {})
        if warmup_iters < 0:
            raise ValueError(f'optim_wrapper.warmup_iters must be >= 0, got {warmup_iters}')
        self.warmup_iters = warmup_iters
        self._updates = 0

    def task_gradient(self, total: Tensor, leaf: Tensor, params: list[Tensor]) -> tuple[Tensor, list]:
        """``d total / d leaf`` in fp32 and ``d total / d params`` (``None`` where unused), from
        one backward through the task's head only (the rest of the network is not reachable
        from the detached leaf). Under float16 AMP the gradients come from the scaled loss and
        are unscaled in fp32 here, before the rule sees them."""
        if self.scaler.is_enabled():
            total = self.scaler.scale(total)  # also initialises the scaler's state
        g, *pg = torch.autograd.grad(total, [leaf, *params], retain_graph=True, allow_unused=True)
        g = torch.zeros_like(leaf, dtype=torch.float32) if g is None else g.float()
        if self.scaler.is_enabled():
            inv = 1.0 / self._scale()
            g, pg = g * inv, [None if x is None else x.float() * inv for x in pg]
        return g, pg

    def _trainable(self) -> list[Tensor]:
        return [p for group in self.optimizer.param_groups for p in group['params'] if p.requires_grad]

    def on_nonfinite_task_gradient(self) -> None:
        if not self.scaler.is_enabled():
            return self._skip('task gradient at the shared feature')
        new = self._scale() * self.scaler.get_backoff_factor()
        self.scaler.update(new_scale=new)
        MMLogger.get_current_instance().info(f'fp16 overflow in a task gradient: loss scale lowered to {new:g}')

    def calibrated_update(self, groups: dict[str, dict[str, Tensor]], shared: Tensor, leaf: Tensor) -> dict:
        """Calibrated backward + step. Returns the log variables (losses and diagnostics)."""
        unknown = set(self.task_weights) - set(groups)
        if unknown:
            raise KeyError(f'optim_wrapper.task_weights names tasks {sorted(unknown)} the model does not have '
                           f'(tasks: {sorted(groups)})')
        log_vars: dict[str, float] = {}
        totals = {}
        for task, losses in groups.items():
            total = sum(v for k, v in losses.items() if 'loss' in k)
            for k, v in losses.items():
                log_vars[f'{task}.{k}'] = v.detach()
            totals[task] = total * self.task_weights.get(task, 1.0)
        loss = sum(totals.values())
        log_vars['loss'] = loss.detach()
        if not self.loss_is_finite(loss, lambda: ', '.join(f'{k}={float(v.detach()):g}' for k, v in totals.items())):
            return log_vars

        active = self.inter is not None and self._updates >= self.warmup_iters
        params = self._trainable()
        grads, head_grads = [], []
        for task, total in totals.items():
            g, pg = self.task_gradient(total, leaf, params)
            grads.append(g.flatten())
            head_grads.append(pg)
        matrix = torch.stack(grads)
        norms = matrix.norm(dim=1)  # non-finite iff some element is (or the norm overflows fp32)
        if _any_rank(not bool(torch.isfinite(norms).all()), matrix.device):
            self.on_nonfinite_task_gradient()
            return log_vars
        for task, n in zip(totals, norms):
            log_vars[f'calib/grad_norm_{task}'] = float(n)
        if len(grads) == 2:
            log_vars['calib/cos'] = float(torch.nn.functional.cosine_similarity(matrix[0], matrix[1], dim=0))
        if self.weighting is not None:
            lw = self.weighting(torch.stack([t.detach() for t in totals.values()]),
                                matrix if self.weighting.needs_grads else None).to(matrix.device)
            matrix = matrix * lw[:, None]
            head_grads = [[None if g is None else g * float(w) for g in pg] for w, pg in zip(lw, head_grads)]
            for task, wt in zip(totals, lw):
                log_vars[f'calib/loss_weight_{task}'] = float(wt)
        combined = self.inter(matrix) if active else matrix.sum(0)
        # Least-squares weights w with G^T w ~ g (what the rule did, in task coordinates), from
        # the m x m normal equations: two passes over the gradients instead of a tall QR.
        gram = (matrix @ matrix.T).double()
        w = torch.linalg.lstsq(gram, (matrix @ combined).double().unsqueeze(1)).solution.squeeze(1)
        for task, wt in zip(totals, w):
            log_vars[f'calib/weight_{task}'] = float(wt)
        log_vars['calib/grad_norm_combined'] = float(combined.norm())

        surrogate = (shared * combined.view_as(shared).to(shared.dtype).detach()).sum()
        for i, p in enumerate(params):
            hs = [pg[i] for pg in head_grads if pg[i] is not None]
            if hs:
                surrogate = surrogate + (p * sum(hs).detach()).sum()
        self._backward_and_step(surrogate)  # the loss was checked above; gradients are checked before the step
        self._updates += 1
        if self.intra is not None and self.intra.last_stats:
            for k, v in self.intra.last_stats.items():
                log_vars[f'calib/{k}'] = v
        return log_vars

    def _extra_state(self) -> dict:
        state = {**super()._extra_state(), 'updates': self._updates}
        if self.weighting is not None:
            state['weighting'] = self.weighting.state_dict()
        return state

    def _load_extra_state(self, extra: dict) -> None:
        super()._load_extra_state(extra)
        self._updates = int(extra.get('updates', 0))
        if self.weighting is not None and 'weighting' in extra:
            self.weighting.load_state_dict(extra['weighting'])


@OPTIM_WRAPPERS.register_module()
class CalibratedAmpOptimWrapper(CalibratedOptimWrapper):
    """:class:`CalibratedOptimWrapper` with ``amp=dtype`` (kept for configs that name it).

    Args:
        dtype: ``'float16'`` or ``'bfloat16'``.
        **kwargs: :class:`CalibratedOptimWrapper` arguments.
    """

    def __init__(self, dtype: str = 'float16', **kwargs) -> None:
        if dtype not in ('float16', 'bfloat16'):
            raise ValueError(f"optim_wrapper.dtype must be 'float16' or 'bfloat16', got {dtype!r}")
        super().__init__(amp=dtype, **kwargs)
