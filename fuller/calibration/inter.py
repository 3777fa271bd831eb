"""Inter-gradient (task-level) calibration rules.

A rule maps the per-task gradients at the shared feature, a matrix ``G`` of shape [m, n]
(one row per task), to one gradient of shape [n]. Hyperparameters are set in ``__init__``;
rules hold no hidden state unless documented. See ``docs/method.md`` for the equations.
"""

from abc import ABC, abstractmethod

import torch
from torch import Tensor


def _check(matrix: Tensor) -> None:
    if matrix.dim() != 2 or matrix.shape[0] < 1:
        raise ValueError(f'expected a [m, n] matrix of task gradients with m >= 1, got shape {tuple(matrix.shape)}')
    if not torch.isfinite(matrix).all():
        raise FloatingPointError('task gradient matrix contains NaN/Inf')


class InterRule(ABC):
    """Base class: ``rule(G) -> g``; ``weights(G)`` gives the coefficients where defined."""

    def __call__(self, matrix: Tensor) -> Tensor:
        _check(matrix)
        return self.combine(matrix)

    @abstractmethod
    def combine(self, matrix: Tensor) -> Tensor: ...

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))
        return f'{type(self).__name__}({args})'


class Sum(InterRule):
    """Plain multi-task learning: ``g = sum_t g_t`` (the naive baseline)."""

    def combine(self, matrix: Tensor) -> Tensor:
        return matrix.sum(0)


class Mean(InterRule):
    """``g = mean_t g_t``."""

    def combine(self, matrix: Tensor) -> Tensor:
        return matrix.mean(0)


class FullerInter(InterRule):
    """FULLER's inter-gradient calibration (our reading of the paper; docs/method.md).

    1. Magnitude: every task gradient is rescaled to a common norm ``r`` (the mean of the
       task norms by default, so the total magnitude of the update is kept), so no task
       dominates the shared feature because its loss happens to be larger.
    2. Direction: where two calibrated gradients conflict (negative inner product), each is
       projected onto the normal plane of the other, using the *calibrated but unprojected*
       gradients as references, which makes the rule independent of task order.
    3. The results are summed.

    With m = 2 the output never conflicts with either task gradient. When the task
    gradients already agree and have equal norms the rule returns their sum (the naive
    update); a single task passes through unchanged.

    Args:
        normalize: target norm of step 1: ``'mean'``, ``'max'``, ``'min'`` or ``None``
            (skip step 1).
        project: apply step 2.
        eps: numerical floor for norms.
    """

    def __init__(self, normalize: str | None = 'mean', project: bool = True, eps: float = 1e-12) -> None:
        if normalize not in ('mean', 'max', 'min', None):
            raise ValueError(f"normalize must be 'mean', 'max', 'min' or None, got {normalize!r}")
        self.normalize = normalize
        self.project = project
        self.eps = eps

    def calibrated(self, matrix: Tensor) -> Tensor:
        """Step 1 only: the task gradients rescaled to the common norm."""
        if self.normalize is None:
            return matrix
        norms = matrix.norm(dim=1, keepdim=True)
        target = {'mean': norms.mean, 'max': norms.max, 'min': norms.min}[self.normalize]()
        return matrix * (target / norms.clamp_min(self.eps))

    def combine(self, matrix: Tensor) -> Tensor:
        g = self.calibrated(matrix)
        if not self.project or g.shape[0] == 1:
            return g.sum(0)
        gram = g @ g.T
        sq = gram.diagonal().clamp_min(self.eps)
        # coef[i, j] = <g_i, g_j> / |g_j|^2 where negative (conflict), else 0; no self term.
        coef = (gram / sq[None, :]).clamp_max(0.0)
        coef.fill_diagonal_(0.0)
        projected = g - coef @ g
        return projected.sum(0)


class TorchJDRule(InterRule):
    """A torchjd aggregator (UPGrad, MGDA, PCGrad, CAGrad, NashMTL, IMTLG, AlignedMTL, ...).

    Args:
        name: class name in ``torchjd.aggregation``.
        **kwargs: its constructor arguments.
    """

    def __init__(self, name: str, **kwargs) -> None:
        import torchjd.aggregation as agg

        if not hasattr(agg, name):
            avail = sorted(n for n in dir(agg) if n[0].isupper())
            raise ValueError(f'torchjd.aggregation has no aggregator {name!r}; available: {avail}')
        self.name = name
        self.kwargs = kwargs
        self._agg = getattr(agg, name)(**kwargs)

    def combine(self, matrix: Tensor) -> Tensor:
        return self._agg(matrix)


_RULES = {'Sum': Sum, 'Mean': Mean, 'FullerInter': FullerInter}


def build_inter_rule(cfg: dict | InterRule | None) -> InterRule | None:
    """Build a rule from ``dict(type=..., **kwargs)``.

    ``type`` is one of ``Sum``, ``Mean``, ``FullerInter``, or any torchjd aggregator name
    (``UPGrad``, ``MGDA``, ``PCGrad``, ``CAGrad``, ``NashMTL``, ``IMTLG``, ``AlignedMTL``,
    ...). ``None`` disables inter calibration (the gradients are summed).
    """
    if cfg is None or isinstance(cfg, InterRule):
        return cfg
    cfg = dict(cfg)
    if 'type' not in cfg:
        raise KeyError(f'inter calibration config {cfg} has no "type"')
    kind = cfg.pop('type')
    if kind in _RULES:
        return _RULES[kind](**cfg)
    import torchjd.aggregation as agg

    base = ('Aggregator', 'WeightedAggregator', 'GramianWeightedAggregator')
    avail = sorted(n for n in dir(agg) if n not in base and n not in _RULES and isinstance(getattr(agg, n), type)
                   and issubclass(getattr(agg, n), agg.Aggregator))
    if kind not in avail:
        raise ValueError(f'optim_wrapper.inter.type={kind!r} is not a rule: FULLER\'s rules are {sorted(_RULES)}; '
                         f'torchjd aggregators: {avail}')
    return TorchJDRule(kind, **cfg)
