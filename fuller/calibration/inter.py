"""Inter-gradient (task-level) calibration rules.

A rule maps the per-task gradients at the shared feature, a matrix ``G`` of shape [m, n]
(one row per task), to one gradient of shape [n]. Hyperparameters are set in ``__init__``;
rules hold no hidden state unless documented. See ``docs/method.md`` for the equations.
"""



import torch
from torch import Tensor

from .step import gram_matrix


def _check(matrix: Tensor) -> None:
    if matrix.dim() != 2 or matrix.shape[0] < 1:
        raise ValueError(f'expected a [m, n] matrix of task gradients with m >= 1, got shape {tuple(matrix.shape)}')
    if not torch.isfinite(matrix).all():
        raise FloatingPointError('task gradient matrix contains NaN/Inf')


class InterRule:
    """A rule combines the task gradients ``G`` [m, n] into one gradient ``g`` [n].

    Every rule here is a *weighting*: ``g = w @ G``. The primary interface is
    :meth:`weights`, which for most rules depends only on the Gram matrix ``K = G G^T``
    [m, m] (``needs_matrix = False``): the weights are then exact diagnostics, cost m x m
    work, and under DDP an all-reduce of ``K`` makes every rank weight the global batch.
    Rules whose weights need ``G`` itself (``needs_matrix = True``, e.g. Nash-MTL) implement
    :meth:`matrix_weights` instead; rules that are not weightings at all implement
    :meth:`combine` and return ``None`` weights. Hyper-parameters are set in ``__init__``.
    """

    needs_matrix = False

    def weights(self, gram: Tensor) -> Tensor:
        """[m] weights from the [m, m] Gram matrix of the task gradients."""
        raise NotImplementedError(f'{type(self).__name__} needs the task gradients, not only their Gram matrix')

    def matrix_weights(self, matrix: Tensor) -> Tensor | None:
        """[m] weights from the task gradients themselves (``needs_matrix`` rules)."""
        return self.weights(gram_matrix(matrix))

    def combine_with_weights(self, matrix: Tensor, gram: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(g, w)``: the combined gradient and the weights that produced it (``None`` for a
        rule that is not a weighting). ``gram``: ``K`` if already known (e.g. all-reduced)."""
        w = self.matrix_weights(matrix) if self.needs_matrix else self.weights(gram_matrix(matrix) if gram is None else gram)
        return w.to(device=matrix.device, dtype=matrix.dtype) @ matrix, w

    def combine(self, matrix: Tensor) -> Tensor:
        return self.combine_with_weights(matrix)[0]

    def __call__(self, matrix: Tensor) -> Tensor:
        _check(matrix)
        return self.combine(matrix)

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))
        return f'{type(self).__name__}({args})'


class Sum(InterRule):
    """Plain multi-task learning: ``g = sum_t g_t`` (the naive baseline), ``w = 1``."""

    def weights(self, gram: Tensor) -> Tensor:
        return torch.ones(gram.shape[0], dtype=torch.float64, device=gram.device)


class Mean(InterRule):
    """``g = mean_t g_t``, ``w = 1/m``."""

    def weights(self, gram: Tensor) -> Tensor:
        return torch.full((gram.shape[0],), 1.0 / gram.shape[0], dtype=torch.float64, device=gram.device)


class FullerInter(InterRule):
    """FULLER's inter-gradient calibration (our reading of the paper; docs/method.md).

    1. Magnitude: every task gradient is rescaled to a common norm ``r`` (the mean of the
       task norms by default, so the total magnitude of the update is kept), so no task
       dominates the shared feature because its loss happens to be larger.
    2. Direction: where two calibrated gradients conflict (negative inner product), each is
       projected onto the normal plane of the other, using the *calibrated but unprojected*
       gradients as references, which makes the rule independent of task order.
    3. The results are summed.

    In closed form on ``K``: with scales ``s_i = r / |g_i|``, calibrated Gram
    ``K' = S K S`` and ``c_ij = min(K'_ij / K'_jj, 0)`` (``i != j``), the sum of the projected
    gradients is ``sum_j s_j (1 - sum_i c_ij) g_j``, so ``w_j = s_j (1 - sum_i c_ij)``.

    With m = 2 the output never conflicts with either task gradient; for m >= 3 it can (the
    pairwise projections are not jointly conflict-free; UPGrad is). When the task gradients
    already agree and have equal norms the rule returns their sum (the naive update); a
    single task passes through unchanged.

    Edge cases, on purpose: a task whose gradient norm is below ``rel_floor`` times the
    largest one (zero included) is treated as absent: weight 0, and it does not count in the
    common norm, so a vanishing task is neither blown up to the others' size nor does it
    shrink them. The arithmetic runs in float64 on ``K`` divided by its largest diagonal
    entry, so it does not depend on the gradients' scale or dtype.

    Args:
        normalize: target norm of step 1: ``'mean'``, ``'max'``, ``'min'`` or ``None``
            (skip step 1).
        project: apply step 2.
        rel_floor: relative norm below which a task counts as absent.
    """

    def __init__(self, normalize: str | None = 'mean', project: bool = True, rel_floor: float = 1e-6) -> None:
        if normalize not in ('mean', 'max', 'min', None):
            raise ValueError(f"normalize must be 'mean', 'max', 'min' or None, got {normalize!r}")
        if not 0 <= rel_floor < 1:
            raise ValueError(f'rel_floor must be in [0, 1), got {rel_floor}')
        self.normalize = normalize
        self.project = project
        self.rel_floor = rel_floor

    def scales(self, gram: Tensor) -> Tensor:
        """Step 1 only: ``s_i`` with ``s_i |g_i| = r`` (0 for an absent task)."""
        k = gram.double()
        norms = k.diagonal().clamp_min(0).sqrt()
        top = norms.max()
        if not top > 0:
            return torch.zeros_like(norms)
        norms = norms / top
        active = norms > self.rel_floor
        if self.normalize is None:
            return active.double()
        target = {'mean': lambda x: x.mean(), 'max': lambda x: x.max(), 'min': lambda x: x.min()}[self.normalize]
        r = target(norms[active])
        return torch.where(active, r / norms.clamp_min(1e-300), torch.zeros_like(norms))

    def weights(self, gram: Tensor) -> Tensor:
        k = gram.double()
        top = k.diagonal().max()
        if not top > 0:
            return torch.zeros(k.shape[0], dtype=torch.float64, device=k.device)
        k = k / top  # scale-free arithmetic; the weights are ratios of norms, the same for G and c*G
        s = self.scales(k)
        if not self.project or int((s > 0).sum()) < 2:
            return s
        kc = s[:, None] * k * s[None, :]
        d = kc.diagonal()
        active = s > 0
        coef = torch.where(active[None, :] & active[:, None], kc / d.clamp_min(1e-300)[None, :], torch.zeros_like(kc))
        coef = coef.clamp_max(0.0)
        coef.fill_diagonal_(0.0)
        return s * (1.0 - coef.sum(0))


class TorchJDRule(InterRule):
    """A torchjd aggregator (UPGrad, MGDA, PCGrad, CAGrad, NashMTL, IMTLG, AlignedMTL, ...).

    Gramian-weighted aggregators (UPGrad, MGDA, PCGrad, CAGrad, IMTL-G, DualProj,
    Aligned-MTL, ...) are used through their gramian weighting, ``weights(K)``. Other
    weighted aggregators (Nash-MTL, ...) need the matrix (``needs_matrix``): their weights are
    those of the local task gradients, also under DDP. Aggregators that are not weightings
    (GradDrop, ConFIG, ...) combine the matrix directly and report no weights.

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
        self._gramian = isinstance(self._agg, agg.GramianWeightedAggregator)
        self._weighted = isinstance(self._agg, agg.WeightedAggregator)
        self.needs_matrix = not self._gramian

    def weights(self, gram: Tensor) -> Tensor:
        if not self._gramian:
            return super().weights(gram)
        return self._agg.gramian_weighting(gram.float()).double()

    def matrix_weights(self, matrix: Tensor) -> Tensor | None:
        if self._gramian:
            return self.weights(gram_matrix(matrix))
        return self._agg.weighting(matrix.float()).double() if self._weighted else None

    def combine_with_weights(self, matrix: Tensor, gram: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self._gramian or self._weighted:
            return super().combine_with_weights(matrix, gram)
        return self._agg(matrix.float()).to(matrix.dtype), None

    def __repr__(self) -> str:
        args = ''.join(f', {k}={v!r}' for k, v in self.kwargs.items())
        return f'TorchJDRule({self.name!r}{args})'


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
