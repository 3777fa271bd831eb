"""The optimizer wrappers own the training step: summed losses behind the non-finite guard (with
AMP), and the calibrated step, on one page (:meth:`CalibratedOptimWrapper.train_step`)."""

from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from torch import Tensor

from fuller.calibration import ModalityStage, TaskOutputs, build_inter_rule, build_intra, build_weighting
from fuller.calibration.contract import task_parameters
from fuller.calibration.step import gram_diagnostics, gram_matrix, surrogate_loss, task_gradients
from fuller.registry import OPTIM_WRAPPERS

from .amp import AMP_DTYPES, resolve_amp


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


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
    ``amp='auto'`` picks bfloat16 where the device has native bf16 units (CUDA devices with
    bf16; CPUs with AVX-512 BF16 or AMX) and full precision elsewhere, and logs what it chose
    and why (:func:`fuller.utils.auto_precision`). ``amp='float16'`` (BEVFusion's recipe, in
    the nuScenes schedules) trains in full precision, logged, where there is no CUDA device and
    ``device_type`` is not given: PyTorch's float16 CPU kernels made one demo step 212 s with a
    NaN gradient. ``device_type='cpu'`` runs float16 on the CPU all the same (the tests do).

    Args:
        max_consecutive_skips: stop after this many skipped steps in a row (0: stop at the first).
        check_grads: also check the gradients before each step (one fused norm over all of them).
        amp: ``None`` (full precision), ``'float16'``, ``'bfloat16'`` or ``'auto'``.
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
        self.max_consecutive_skips = max_consecutive_skips
        self.check_grads = check_grads
        self.skipped_steps = 0
        self._consecutive_skips = 0
        self.device_type, self.amp = resolve_amp(amp, device_type, 'optim_wrapper.amp', 'training')
        self.cast_dtype = AMP_DTYPES[self.amp]
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=init_scale, growth_interval=growth_interval,
                                           enabled=self.cast_dtype == torch.float16)
        if self.scaler.is_enabled():
            self.check_grads = False  # the scaler finds overflowing gradients itself

    def train_step(self, model, data: dict) -> dict:
        """One training step of the naive multi-task baseline: the summed losses, guarded.
        ``model``: the model, or its DDP wrapper (the forward runs through it)."""
        with self.optim_context(model):
            losses = model(**_unwrap(model).data_preprocessor(data, True), mode='loss')
        loss, log_vars = _unwrap(model).parse_losses(losses)
        self.update_params(loss)
        return log_vars

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

    def step(self, **kwargs) -> bool:
        """The optimizer step; ``False`` when float16's scaler skipped it for an overflow."""
        if not self.scaler.is_enabled():
            super().step(**kwargs)
            return True
        if self.clip_grad_kwargs:
            self.scaler.unscale_(self.optimizer)
            self._clip_grad()
        before = self._scale()
        self.scaler.step(self.optimizer, **kwargs)
        self.scaler.update()
        return self._scale() >= before

    def _skip(self, what: str, detail: str = '') -> None:
        self.skipped_steps += 1
        self._consecutive_skips += 1
        hub = MessageHub.get_current_instance()
        it = hub.get_info('iter', None)
        it = None if it is None else it + 1  # the message hub counts from 0, the console and the log from 1
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
                           zero_kwargs: dict | None = None) -> bool:
        """Backward of an already-checked loss; step unless the gradients are non-finite.
        Returns whether the parameters were updated."""
        self.backward(self.scale_loss(loss))
        if not self.should_update():
            return False
        if self.check_grads and not self._grads_finite():
            self.zero_grad(**(zero_kwargs or {}))
            self._skip('gradient')
            return False
        stepped = self.step(**(step_kwargs or {}))
        self.zero_grad(**(zero_kwargs or {}))
        self._consecutive_skips = 0
        return stepped is not False

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
    """:class:`GuardedOptimWrapper` that trains with FULLER's multi-level gradient calibration.

    :meth:`train_step` is the whole step, in numbered stages (the model's ``train_step`` and the
    DDP wrapper hand it the model): the model's ``'tasks'`` forward returns the per-task losses
    computed on a detached leaf copy ``F'`` of the shared feature ``F``, the camera/LiDAR pair
    passing through the step's :class:`~fuller.calibration.ModalityStage`; each task's gradient
    at ``F'`` is taken through its head only, the ``inter`` rule's weights combine them, and the
    result goes through the backbone in one backward (the tensor math is
    :mod:`fuller.calibration.step`; the model contract :class:`~fuller.calibration.CalibratedModel`).
    Gradient accumulation, clipping, AMP and the non-finite guard are those of the parent class.

    **DDP** (``sync``): with ``'global'`` (the default) the ranks all-reduce the m x m Gram
    matrix of their task gradients and the two squared modality norms, so every rank applies
    the weights and scales of the *global* batch: the update equals one process calibrating
    the concatenated batch (exactly, for losses that are means over samples). ``'local'``
    calibrates each rank's samples on its own (the update equals gradient accumulation of
    per-rank calibrations). Rules that need the matrix itself (Nash-MTL, non-weighting
    aggregators) and the dynamic loss ``weighting`` stay per rank. Without a process group the
    two are the same.

    Args:
        inter: inter-task rule config (``dict(type='FullerInter')``, ``dict(type='UPGrad')``,
            ...); ``None`` sums the task gradients.
        intra: modality calibrator config (``dict(type='ModalityCalibrator', target='mean')``;
            ``per_task=True`` balances each task's camera/LiDAR gradients before adding them,
            :class:`~fuller.calibration.ModalityStage`); ``None`` switches it off.
        task_weights: static loss weight per task, e.g. ``dict(det=1.0, map=1.0)``.
        weighting: dynamic loss weighting applied on top of them, before the rule
            (``dict(type='DWA' | 'UncertaintyWeighting' | 'GradNorm', ...)``); ``None``: none.
        warmup_iters: plain summed gradients for this many optimizer updates (steps that were
            skipped or only accumulated do not count) before calibrating.
        sync: ``'global'`` or ``'local'`` (see above).
        retain_task_graphs: keep each task's graph after its gradient pass; only needed when
            heads share modules below the shared feature (an error says so). Under DDP the
            graphs are always kept (DDP's output node is shared by all tasks).
        **kwargs: :class:`GuardedOptimWrapper` arguments (``max_consecutive_skips``, ``amp``)
            and :class:`OptimWrapper` ones (``optimizer``, ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self, inter: dict | None = None, intra: dict | None = None, task_weights: dict | None = None,
                 weighting: dict | None = None, warmup_iters: int = 0, sync: str = 'global',
                 retain_task_graphs: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inter = build_inter_rule(inter)
        self.modality_calibrator = build_intra(intra)
        self.weighting = build_weighting(weighting)
        self.task_weights = dict(task_weights or {})
        if warmup_iters < 0:
            raise ValueError(f'optim_wrapper.warmup_iters must be >= 0, got {warmup_iters}')
        if sync not in ('global', 'local'):
            raise ValueError(f"optim_wrapper.sync must be 'global' or 'local', got {sync!r}")
        self.warmup_iters = warmup_iters
        self.sync = sync
        self.retain_task_graphs = retain_task_graphs
        self._updates = 0
        self._group = None

    # ------------------------------------------------------------------ the step
    def train_step(self, model, data: dict) -> dict:
        """One calibrated training step of ``model`` (a :class:`~fuller.calibration.CalibratedModel`,
        or its DDP wrapper, through which the forward then runs) on ``data``; returns the log
        variables (losses and calibration diagnostics). The tensor math is
        :mod:`fuller.calibration.step`."""
        net = _unwrap(model)
        # 1. Forward. The heads run on F', a detached leaf copy of the shared feature F; the
        #    camera/LiDAR pair passes through this step's modality stage on its way to the fuser.
        modality = ModalityStage(self.modality_calibrator, self._sync_group()) if self.modality_calibrator else None
        with self.optim_context(model):
            out: TaskOutputs = model(**net.data_preprocessor(data, True), mode='tasks', modality=modality)
        losses, shared, leaf, aux = out.losses, out.shared, out.leaf, out.aux
        totals, log_vars = self._task_totals(losses)
        log_vars.update({k: v.detach() for k, v in aux.items()})
        aux_total = sum(aux.values()) if aux else None
        loss = sum(totals.values()) + (aux_total if aux_total is not None else 0)
        log_vars['loss'] = loss.detach()
        if not self.loss_is_finite(loss, lambda: ', '.join(f'{k}={float(v.detach()):g}'
                                                           for k, v in {**totals, **aux}.items())):
            return log_vars

        # 2. Task gradients at F', each through its own head only (G [m, n] and the heads' own
        #    parameter gradients). fp16: from the scaled losses, unscaled in fp32. DDP joins all
        #    outputs in one autograd node (its sink), so under DDP the task graphs are kept.
        heads = task_parameters(net)
        loss_scale = float(self.scaler.scale(torch.ones((), device=leaf.device))) if self.scaler.is_enabled() else 1.0
        retain = self.retain_task_graphs or is_model_wrapper(model)
        matrix, head_grads = task_gradients(totals, leaf, heads, loss_scale, retain)
        if self.weighting is not None:  # dynamic loss weights (DWA, uncertainty, GradNorm)
            matrix, head_grads = self._apply_weighting(totals, matrix, head_grads, log_vars)

        # 3. Inter-gradient calibration: the rule's weights from K = G G^T (of the global batch
        #    under sync='global'), the calibrated gradient g = w @ G.
        gram = self._reduce(gram_matrix(matrix))
        if not self._finite(gram):
            self.on_nonfinite_task_gradient()
            return log_vars
        combined, weights = self._combine(matrix, gram)
        log_vars.update(gram_diagnostics(gram, weights, list(totals)))
        if weights is None:
            log_vars['calib/grad_norm_combined'] = float(combined.norm())

        # 4. Intra-gradient calibration, per task: each task's share w_t g_t is taken back to the
        #    camera/LiDAR pair and balanced there before the backward (the plain form needs no
        #    preparation: it rescales the pair's gradient during the backward).
        if modality is not None and modality.per_task and modality.pair is not None:
            if weights is None:
                raise ValueError(f'per-task modality calibration needs an inter rule that weights the tasks; '
                                 f'{self.inter!r} does not (use FullerInter, Sum, Mean or a weighting aggregator)')
            w = weights.to(device=matrix.device, dtype=matrix.dtype)
            modality.prepare(shared, {t: w[i] * matrix[i] for i, t in enumerate(totals)})

        # 5. One backward of <F, g> + sum_t <heads, h_t> (g through decoder, fuser and, calibrated
        #    at the pair, both branches) + the branches' auxiliary losses (straight into their
        #    branch, past the pair), then the guarded step.
        surrogate = surrogate_loss(shared, combined, heads, head_grads)
        if aux_total is not None:
            surrogate = surrogate + aux_total
        if self._backward_and_step(surrogate):
            self._updates += 1

        # 6. What the modality stage measured during that backward.
        if modality is not None:
            log_vars.update({f'calib/{k}': v for k, v in modality.stats().items()})
        return log_vars

    # ------------------------------------------------------------------ its parts
    def _task_totals(self, groups: dict[str, dict[str, Tensor]]) -> tuple[dict[str, Tensor], dict]:
        unknown = set(self.task_weights) - set(groups)
        if unknown:
            raise KeyError(f'optim_wrapper.task_weights names tasks {sorted(unknown)} the model does not have '
                           f'(tasks: {sorted(groups)})')
        log_vars = {f'{task}.{k}': v.detach() for task, losses in groups.items() for k, v in losses.items()}
        totals = {task: sum(v for k, v in losses.items() if 'loss' in k) * self.task_weights.get(task, 1.0)
                  for task, losses in groups.items()}
        return totals, log_vars

    def _apply_weighting(self, totals: dict, matrix: Tensor, head_grads: list, log_vars: dict) -> tuple:
        lw = self.weighting(torch.stack([t.detach() for t in totals.values()]),
                            matrix if self.weighting.needs_grads else None).to(matrix.device)
        log_vars.update({f'calib/loss_weight_{task}': float(w) for task, w in zip(totals, lw)})
        head_grads = [[None if g is None else g * float(w) for g in pg] for w, pg in zip(lw, head_grads)]
        return matrix * lw[:, None], head_grads

    def _combine(self, matrix: Tensor, gram: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.inter is None or self._updates < self.warmup_iters:
            weights = torch.ones(matrix.shape[0], dtype=torch.float64, device=matrix.device)
            return weights.to(matrix.dtype) @ matrix, weights
        return self.inter.combine_with_weights(matrix, gram)

    def _sync_group(self):
        """The process group of the calibration statistics (its own, so that its collectives
        never interleave with DDP's gradient buckets); ``None`` for local calibration."""
        if self.sync != 'global' or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        if self._group is None:
            self._group = dist.new_group(backend=dist.get_backend())
        return self._group

    def _reduce(self, gram: Tensor) -> Tensor:
        """``K`` of the global batch: with mean losses the global task gradient at the
        concatenated feature is the per-rank gradients / W stacked, so ``K = sum_r K_r / W^2``."""
        group = self._sync_group()
        if group is None:
            return gram
        dist.all_reduce(gram, group=group)
        return gram / dist.get_world_size(group) ** 2

    def _finite(self, gram: Tensor) -> bool:
        ok = bool(torch.isfinite(gram).all())
        return ok if self._sync_group() is not None else not _any_rank(not ok, gram.device)

    def on_nonfinite_task_gradient(self) -> None:
        if not self.scaler.is_enabled():
            return self._skip('task gradient at the shared feature')
        new = self._scale() * self.scaler.get_backoff_factor()
        self.scaler.update(new_scale=new)
        MMLogger.get_current_instance().info(f'fp16 overflow in a task gradient: loss scale lowered to {new:g}')

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
