"""The calibrated optimizer wrapper: multi-level gradient calibration inside the step."""

import torch
from mmengine.optim import OptimWrapper
from torch import Tensor

from fuller.calibration import build_inter_rule, build_intra
from fuller.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CalibratedOptimWrapper(OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` that applies FULLER's gradient calibration.

    ``calibrated_update`` receives the per-task loss groups computed on a detached leaf
    copy ``F'`` of the shared feature ``F``. For each task ``t`` it computes
    ``g_t = d(w_t L_t)/dF'`` (a backward through that task's head only), combines them with
    the ``inter`` rule into ``g``, and runs **one** backward of
    ``sum_t w_t L_t(F') + <F, g>``: the heads receive their own gradients, the backbone
    receives ``g`` once (so DDP sees a single backward per step). The ``intra`` calibrator is
    installed on the model and rescales the camera/LiDAR gradients inside that backward.
    Gradient accumulation, clipping and the step are those of the parent class.

    Args:
        inter: inter-task rule config (``dict(type='FullerInter')``, ``dict(type='UPGrad')``,
            ...); ``None`` sums the task gradients.
        intra: modality calibrator config (``dict(type='ModalityCalibrator', target='mean')``);
            ``None`` switches it off.
        task_weights: static loss weight per task, e.g. ``dict(det=1.0, map=1.0)``.
        warmup_iters: plain summed gradients for this many updates before calibrating.
        **kwargs: :class:`OptimWrapper` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, inter: dict | None = None, intra: dict | None = None, task_weights: dict | None = None,
                 warmup_iters: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inter = build_inter_rule(inter)
        self.intra = build_intra(intra)
        self.task_weights = dict(task_weights or {})
        if warmup_iters < 0:
            raise ValueError(f'optim_wrapper.warmup_iters must be >= 0, got {warmup_iters}')
        self.warmup_iters = warmup_iters
        self._updates = 0

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
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite loss: { {k: float(v) for k, v in totals.items()} }')

        active = self.inter is not None and self._updates >= self.warmup_iters
        grads = []
        for task, total in totals.items():
            (g,) = torch.autograd.grad(total, leaf, retain_graph=True, allow_unused=True)
            grads.append((torch.zeros_like(leaf) if g is None else g).float().flatten())
        matrix = torch.stack(grads)
        combined = self.inter(matrix) if active else matrix.sum(0)
        norms = matrix.norm(dim=1)
        for task, n in zip(totals, norms):
            log_vars[f'calib/grad_norm_{task}'] = float(n)
        if len(grads) == 2:
            log_vars['calib/cos'] = float(torch.nn.functional.cosine_similarity(matrix[0], matrix[1], dim=0))
        # Least-squares weights w with G^T w ~ g: what the rule did, in task coordinates.
        w = torch.linalg.lstsq(matrix.T.double(), combined.double().unsqueeze(1)).solution.squeeze(1)
        for task, wt in zip(totals, w):
            log_vars[f'calib/weight_{task}'] = float(wt)
        log_vars['calib/grad_norm_combined'] = float(combined.norm())

        surrogate = loss + (shared * combined.view_as(shared).to(shared.dtype).detach()).sum()
        self.update_params(surrogate)
        self._updates += 1
        if self.intra is not None and self.intra.last_stats:
            for k, v in self.intra.last_stats.items():
                log_vars[f'calib/{k}'] = v
        return log_vars
