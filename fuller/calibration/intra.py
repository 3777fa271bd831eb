"""Intra-gradient (modality-level) calibration.

The camera and LiDAR BEV maps enter the fuser through :func:`intra_calibrate`, an identity
in the forward pass whose backward receives both modality gradients at once and rescales
them to a common magnitude, keeping their directions. Under DDP with a process ``group`` the
two squared norms are all-reduced first, so every rank applies the scales of the global batch
(per-sample norms, ``per_sample=True``, are local by nature).
"""

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
        eps: numerical floor.
    """

    def __init__(self, target: str = 'mean', ratio: float = 1.0, per_sample: bool = False, eps: float = 1e-12):
        if target not in ('mean', 'max', 'min', 'ratio', 'none'):
            raise ValueError(f"intra target must be 'mean', 'max', 'min', 'ratio' or 'none', got {target!r}")
        if ratio <= 0:
            raise ValueError(f'intra ratio must be positive, got {ratio}')
        self.target = target
        self.ratio = ratio
        self.per_sample = per_sample
        self.eps = eps

    def __repr__(self) -> str:
        return (f'ModalityCalibrator(target={self.target!r}, ratio={self.ratio}, per_sample={self.per_sample}, '
                f'eps={self.eps})')

    def _norm(self, g: Tensor) -> Tensor:
        g = g.to(torch.promote_types(g.dtype, torch.float32))  # fp16/bf16 norms in fp32
        if self.per_sample:
            return g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
        return g.norm()

    def __call__(self, g_cam: Tensor, g_lidar: Tensor, group=None) -> tuple[Tensor, Tensor, dict[str, float]]:
        """Calibrated ``(g_cam, g_lidar)`` and their statistics (norms before, ratio before/after).

        ``group``: a process group over which the batch-level squared norms are summed first.
        """
        n_c = self._norm(g_cam)
        n_l = self._norm(g_lidar)
        if group is not None and not self.per_sample:
            sq = torch.stack([n_c.double() ** 2, n_l.double() ** 2])
            dist.all_reduce(sq, group=group)
            n_c, n_l = (sq.sqrt().to(n_c.dtype)).unbind()
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


class _IntraCalibration(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cam: Tensor, lidar: Tensor, calibrator: ModalityCalibrator, group, stats: dict | None):
        ctx.calibrator, ctx.group, ctx.stats = calibrator, group, stats
        return cam.view_as(cam), lidar.view_as(lidar)

    @staticmethod
    def backward(ctx, g_cam: Tensor, g_lidar: Tensor):
        if g_cam is None or g_lidar is None:
            return g_cam, g_lidar, None, None, None
        out_c, out_l, stats = ctx.calibrator(g_cam, g_lidar, ctx.group)
        if ctx.stats is not None:
            ctx.stats.update(stats)
        return out_c, out_l, None, None, None


def intra_calibrate(cam: Tensor, lidar: Tensor, calibrator: ModalityCalibrator | None, group=None,
                    stats: dict | None = None) -> tuple[Tensor, Tensor]:
    """Identity on (camera BEV, LiDAR BEV) whose backward calibrates the pair's gradients.

    Args:
        calibrator: the rule; ``None``: plain identity.
        group: process group whose ranks share the norms (global-batch calibration); ``None``: local.
        stats: a dict the backward fills with the calibration statistics.
    """
    if calibrator is None:
        return cam, lidar
    return _IntraCalibration.apply(cam, lidar, calibrator, group, stats)


def build_intra(cfg: dict | ModalityCalibrator | None) -> ModalityCalibrator | None:
    """Build from ``dict(type='ModalityCalibrator', ...)``; ``None`` switches it off."""
    if cfg is None or isinstance(cfg, ModalityCalibrator):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop('type', 'ModalityCalibrator')
    if kind != 'ModalityCalibrator':
        raise ValueError(f'unknown intra calibration type {kind!r} (only "ModalityCalibrator")')
    return ModalityCalibrator(**cfg)
