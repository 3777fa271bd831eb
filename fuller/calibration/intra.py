"""Intra-gradient (modality-level) calibration.

The camera and LiDAR BEV maps enter the fuser through a :class:`ModalityStage`, an identity
in the forward pass whose backward receives both modality gradients at once and rescales
them to a common magnitude, keeping their directions. Under DDP with a process ``group`` the
two squared norms are all-reduced first, so every rank applies the scales of the global batch
(per-sample norms, ``per_sample=True``, are local by nature).

With ``per_task=True`` the calibration changes directions, not only scales: each task's
gradient reaching the two branches is balanced on its own, before the tasks' contributions are
added (:meth:`ModalityStage.prepare`). A scalar per branch and step is nearly invisible to
Adam-type optimizers (they normalise it away); rebalancing each task within each branch
changes the mix of detection and map gradient a branch receives, which they do see.
"""

import weakref

import torch
import torch.distributed as dist
from torch import Tensor


class ModalityCalibrator:
    """Rescale a pair of modality gradients to a common norm.

    Args:
        target: ``'mean'`` (both get the mean of the two norms; the total magnitude is
            kept), ``'max'``, ``'min'`` or ``'ratio'`` (camera norm = ``ratio`` x LiDAR norm,
            with the pair's mean norm preserved), or ``'none'``: measure only (the gradients
            pass unchanged; their norms are reported), for uncalibrated baselines.
        ratio: camera/LiDAR norm ratio for ``target='ratio'``.
        per_sample: compute norms per sample (dim 0) instead of over the whole batch.
        per_task: balance each task's camera/LiDAR gradients separately, then add the tasks
            (needs an inter rule with task weights; :meth:`ModalityStage.prepare`).
        eps: numerical floor.
    """

    def __init__(self, target: str = 'mean', ratio: float = 1.0, per_sample: bool = False, per_task: bool = False,
                 eps: float = 1e-12):
        if target not in ('mean', 'max', 'min', 'ratio', 'none'):
            raise ValueError(f"intra target must be 'mean', 'max', 'min', 'ratio' or 'none', got {target!r}")
        if ratio <= 0:
            raise ValueError(f'intra ratio must be positive, got {ratio}')
        self.target = target
        self.ratio = ratio
        self.per_sample = per_sample
        self.per_task = per_task
        self.eps = eps

    def __repr__(self) -> str:
        return (f'ModalityCalibrator(target={self.target!r}, ratio={self.ratio}, per_sample={self.per_sample}, '
                f'per_task={self.per_task}, eps={self.eps})')

    def _norm(self, g: Tensor) -> Tensor:
        """Norm(s) of ``g`` in float64: fp32 norms of each row of the last two dims (e.g. one
        BEV channel), combined in float64. Within 1e-7 relative of the float64 norm for any input
        dtype and memory layout (the fuser hands the pair as non-contiguous slices of one
        gradient; a single fp32 norm of such a view was off by up to 5e-4 relative), and faster
        than both (a float64 copy of the gradient costs 3x an fp32 norm)."""
        g = g.to(torch.promote_types(g.dtype, torch.float32))  # fp16/bf16 in fp32; float64 stays
        rows = g.flatten(-2) if g.dim() >= 2 else g.reshape(1, -1)
        sq = torch.linalg.vector_norm(rows, dim=-1).double().pow(2)  # [..., rows]
        if self.per_sample:
            return sq.flatten(1).sum(1).sqrt().view(-1, *([1] * (g.dim() - 1)))
        return sq.sum().sqrt()

    def __call__(self, g_cam: Tensor, g_lidar: Tensor, group=None) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Calibrated ``(g_cam, g_lidar)`` and their statistics (norms before, ratio before/after).

        ``group``: a process group over which the batch-level squared norms are summed first.
        """
        n_c = self._norm(g_cam)
        n_l = self._norm(g_lidar)
        if group is not None and not self.per_sample:
            sq = torch.stack([n_c.double() ** 2, n_l.double() ** 2])
            dist.all_reduce(sq, group=group)
            n_c, n_l = sq.sqrt().unbind()
        if self.target == 'none':
            t_c, t_l = n_c, n_l
        elif self.target == 'mean':
            t_c = t_l = (n_c + n_l) / 2
        elif self.target == 'max':
            t_c = t_l = torch.maximum(n_c, n_l)
        elif self.target == 'min':
            t_c = t_l = torch.minimum(n_c, n_l)
        else:
            mean = (n_c + n_l) / 2
            t_l = 2 * mean / (1 + self.ratio)
            t_c = self.ratio * t_l
        s_c = torch.where(n_c > self.eps, t_c / n_c.clamp_min(self.eps), torch.ones_like(n_c))
        s_l = torch.where(n_l > self.eps, t_l / n_l.clamp_min(self.eps), torch.ones_like(n_l))
        out_c, out_l = g_cam * s_c.to(g_cam.dtype), g_lidar * s_l.to(g_lidar.dtype)
        before = float(n_c.sum() / n_l.sum().clamp_min(self.eps))
        stats = {
            'cam_lidar_ratio_before': before,
            # the scales make the ratio exact; per sample it is the ratio of the summed norms
            'cam_lidar_ratio_after': float((n_c * s_c).sum() / (n_l * s_l).sum().clamp_min(self.eps)),
            'grad_norm_cam': float(n_c.sum()),
            'grad_norm_lidar': float(n_l.sum()),
        }
        return out_c, out_l, stats


class _PairIdentity(torch.autograd.Function):
    """Identity on (camera BEV, LiDAR BEV) whose backward hands both gradients to its stage.

    The node holds its stage by a weak reference: the stage holds the node's outputs (its
    ``pair``), and a strong reference back would make a cycle through autograd's C++ graph that
    Python's collector cannot see, keeping every step's stage and BEV pair alive (measured: about
    8 MB per step of the demo model, 7 GB over the main job)."""

    @staticmethod
    def forward(ctx, cam: Tensor, lidar: Tensor, stage: 'ModalityStage'):
        ctx.stage = weakref.ref(stage)
        return cam.view_as(cam), lidar.view_as(lidar)

    @staticmethod
    def backward(ctx, g_cam: Tensor, g_lidar: Tensor):
        if g_cam is None or g_lidar is None:
            return g_cam, g_lidar, None
        stage = ctx.stage()
        if stage is None:
            raise RuntimeError('ModalityStage: the backward reached the camera/LiDAR pair after its stage was '
                               'released (keep the stage until the step\'s backward has run)')
        return (*stage.calibrate(g_cam, g_lidar), None)


class ModalityStage:
    """The modality calibration of one training step (FULLER's intra-gradient calibration).

    The calibrated step makes one per step and uses it in this order:

    1. forward: the model passes the (camera, LiDAR) BEV pair through the stage on its way
       into the fuser (``cam, lidar = stage(cam, lidar)``, an identity in value);
    2. per task only (``calibrator.per_task``): :meth:`prepare` takes each task's weighted
       gradient at the shared feature ``F`` back through the decoder and fuser to the pair (the
       encoders excluded), calibrates each task's pair and adds them;
    3. the step's one backward reaches the pair, and the stage hands the branches the
       calibrated gradients: the incoming pair rescaled to a common norm, or (per task) the sum
       prepared in 2 (scaled like the incoming pair, so loss scales and accumulation factors
       carry over);
    4. :meth:`stats` returns what it measured (norms, camera/LiDAR ratios before and after).

    With target ``'none'`` the gradients pass unchanged (measurement only), per task or not.

    Args:
        calibrator: the pair rule (``target``, ``ratio``, ``per_sample``, ``per_task``).
        group: process group whose ranks share the norms (``sync='global'``); ``None``: local.
    """

    def __init__(self, calibrator: ModalityCalibrator, group=None) -> None:
        self.calibrator, self.group = calibrator, group
        self.pair: tuple[Tensor, Tensor] | None = None
        self._prepared = None
        self._stats: dict[str, float] = {}
        self._calibrated = False

    @property
    def per_task(self) -> bool:
        return self.calibrator.per_task

    def __call__(self, cam: Tensor, lidar: Tensor) -> tuple[Tensor, Tensor]:
        if self.pair is not None:
            raise RuntimeError('ModalityStage: the model passed a second camera/LiDAR pair in one step; a stage '
                               'calibrates one pair (make one stage per forward)')
        self.pair = _PairIdentity.apply(cam, lidar, self)
        return self.pair

    def prepare(self, shared: Tensor, task_grads: dict[str, Tensor]) -> None:
        """Stage 2 (per task): calibrate each task's gradient at the pair; ``task_grads``: task ->
        its weighted gradient at ``F`` (flat or shaped like ``F``)."""
        if self.pair is None:
            raise RuntimeError('per-task modality calibration: the model has no camera/LiDAR pair (one modality?)')
        cam, lidar = self.pair
        raw_c, raw_l = torch.zeros_like(cam), torch.zeros_like(lidar)
        cal_c, cal_l = torch.zeros_like(cam), torch.zeros_like(lidar)
        stats: dict[str, float] = {}
        for name, g in task_grads.items():
            gc, gl = torch.autograd.grad(shared, [cam, lidar], grad_outputs=g.view_as(shared).to(shared.dtype),
                                         retain_graph=True, allow_unused=True)
            gc = torch.zeros_like(cam) if gc is None else gc
            gl = torch.zeros_like(lidar) if gl is None else gl
            c, l, st = self.calibrator(gc, gl, self.group)
            stats[f'cam_lidar_ratio_before_{name}'] = st['cam_lidar_ratio_before']
            raw_c, raw_l = raw_c + gc, raw_l + gl
            cal_c, cal_l = cal_c + c, cal_l + l
        n, eps = self.calibrator._norm, self.calibrator.eps
        stats['cam_lidar_ratio_before'] = float(n(raw_c).sum() / n(raw_l).sum().clamp_min(eps))
        stats['cam_lidar_ratio_after'] = float(n(cal_c).sum() / n(cal_l).sum().clamp_min(eps))
        stats['grad_norm_cam'] = float(n(raw_c).sum())
        stats['grad_norm_lidar'] = float(n(raw_l).sum())
        # How much the directions change: cosine between the calibrated and the raw gradient per branch.
        for key, a, b in (('cam', cal_c, raw_c), ('lidar', cal_l, raw_l)):
            denom = (n(a) * n(b)).clamp_min(1e-30)
            stats[f'direction_cos_{key}'] = float((a.double() * b.double()).sum() / denom)
        self._prepared = ((raw_c.detach(), raw_l.detach()), (cal_c.detach(), cal_l.detach()))
        self._stats = stats

    def calibrate(self, g_cam: Tensor, g_lidar: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 3, called by the backward at the pair: the gradients the branches receive."""
        self._calibrated = True
        if not self.per_task:
            out_c, out_l, self._stats = self.calibrator(g_cam, g_lidar, self.group)
            return out_c, out_l
        prepared, self._prepared = self._prepared, None
        if prepared is None:
            raise RuntimeError('per-task modality calibration: the backward reached the pair before prepare()')
        (raw_c, raw_l), (cal_c, cal_l) = prepared
        # The incoming pair is the raw sum times the step's loss scale / accumulation factor.
        num = (g_cam.double() * raw_c.double()).sum() + (g_lidar.double() * raw_l.double()).sum()
        den = (raw_c.double() ** 2).sum() + (raw_l.double() ** 2).sum()
        factor = (num / den).to(g_cam.dtype) if den > 0 else torch.ones((), dtype=g_cam.dtype)
        return (cal_c * factor).to(g_cam.dtype), (cal_l * factor).to(g_lidar.dtype)

    def stats(self) -> dict[str, float]:
        """Stage 4: the statistics of this step's calibration (empty for a model without a pair).
        Read before the backward reached the pair, it is an error, not a silent empty dict."""
        if self.pair is None:
            return {}
        if not self._calibrated:
            raise RuntimeError('ModalityStage.stats(): the backward has not reached the camera/LiDAR pair yet')
        return dict(self._stats)


def build_intra(cfg: dict | ModalityCalibrator | None) -> ModalityCalibrator | None:
    """Build from ``dict(type='ModalityCalibrator', ...)``; ``None`` switches it off."""
    if cfg is None or isinstance(cfg, ModalityCalibrator):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop('type', 'ModalityCalibrator')
    if kind != 'ModalityCalibrator':
        raise ValueError(f'unknown intra calibration type {kind!r} (only "ModalityCalibrator")')
    return ModalityCalibrator(**cfg)
