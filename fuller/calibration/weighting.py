"""Dynamic loss-weighting baselines in the calibration interface.

A weighting turns the per-task losses (and, where it needs them, the per-task gradients at
the shared feature, ``G`` [m, n]) into task weights ``w`` [m]; the calibrated step then uses
``w_t L_t`` and ``w_t g_t`` before the inter-task rule. All of them are cheap here because
``G`` is already computed at the shared feature.

- :class:`DWA`: Dynamic Weight Average (Liu et al., CVPR 2019), ``w = m softmax(r / T)``
  with ``r_t`` the ratio of task t's mean loss over the last two windows.
- :class:`UncertaintyWeighting`: homoscedastic uncertainty (Kendall et al., CVPR 2018),
  objective ``sum_t exp(-s_t) L_t + s_t`` over learned ``s_t``; ``w_t = exp(-s_t)``.
- :class:`GradNorm` (Chen et al., ICML 2018): weights moved so that ``||w_t g_t||`` tracks
  ``mean_t ||w_t g_t|| * r_t^alpha`` with ``r_t`` the relative inverse training rate;
  renormalised to sum to m. Here ``g_t`` is taken at the shared feature, not at a weight.

Weights are computed without gradient; each class keeps its state in ``state_dict()``.
"""

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class LossWeighting(ABC):
    """``weighting(losses [m], grads [m, n]) -> weights [m]`` (and update its state)."""

    needs_grads = False

    def __call__(self, losses: Tensor, grads: Tensor | None = None) -> Tensor:
        losses = losses.detach().double().flatten()
        if not torch.isfinite(losses).all():
            raise FloatingPointError(f'loss weighting got non-finite losses {losses.tolist()}')
        return self.update(losses, None if grads is None else grads.detach()).to(torch.float32)

    @abstractmethod
    def update(self, losses: Tensor, grads: Tensor | None) -> Tensor: ...

    def state_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, Tensor) else v) for k, v in vars(self).items() if k.startswith('_')}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            cur = getattr(self, k, None)
            setattr(self, k, torch.tensor(v, dtype=torch.float64) if isinstance(cur, Tensor) else v)

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))
        return f'{type(self).__name__}({args})'


class DWA(LossWeighting):
    """Dynamic Weight Average.

    Args:
        temperature: softmax temperature ``T`` (2.0 in the paper).
        window: iterations per averaging window (the paper uses epochs).
    """

    def __init__(self, temperature: float = 2.0, window: int = 50) -> None:
        if temperature <= 0 or window < 1:
            raise ValueError(f'DWA needs temperature > 0 and window >= 1, got {temperature}, {window}')
        self.temperature = temperature
        self.window = window
        self._sum = None
        self._count = 0
        self._history: list = []  # mean losses of the last two finished windows

    def update(self, losses: Tensor, grads: Tensor | None) -> Tensor:
        m = len(losses)
        if len(self._history) == 2:
            prev, prev2 = (torch.as_tensor(h, dtype=torch.float64) for h in self._history[::-1])
            r = prev / prev2.clamp_min(1e-12)
            w = m * torch.softmax(r / self.temperature, 0)
        else:
            w = torch.ones(m, dtype=torch.float64)
        self._sum = losses.clone() if self._sum is None else torch.as_tensor(self._sum, dtype=torch.float64) + losses
        self._count += 1
        if self._count == self.window:
            self._history = (self._history + [(self._sum / self._count).tolist()])[-2:]
            self._sum, self._count = None, 0
        return w


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting with learned log-variances ``s`` (plain SGD).

    Args:
        lr: step size of ``s``.
        init: initial ``s``.
    """

    def __init__(self, lr: float = 0.01, init: float = 0.0) -> None:
        self.lr = lr
        self.init = init
        self._s = None

    def update(self, losses: Tensor, grads: Tensor | None) -> Tensor:
        if self._s is None:
            self._s = torch.full_like(losses, self.init)
        s = torch.as_tensor(self._s, dtype=torch.float64)
        w = torch.exp(-s)
        # d/ds [exp(-s) L + s] = 1 - exp(-s) L
        self._s = s - self.lr * (1 - w * losses)
        return w


class GradNorm(LossWeighting):
    """GradNorm at the shared feature.

    Args:
        alpha: restoring-force strength (1.5 in the paper).
        lr: step size of the weights.
    """

    needs_grads = True

    def __init__(self, alpha: float = 1.5, lr: float = 0.025) -> None:
        self.alpha = alpha
        self.lr = lr
        self._w = None
        self._initial = None

    def update(self, losses: Tensor, grads: Tensor | None) -> Tensor:
        if grads is None:
            raise ValueError('GradNorm needs the per-task gradients')
        m = len(losses)
        if self._w is None:
            self._w = torch.ones(m, dtype=torch.float64)
            self._initial = losses.clone().clamp_min(1e-12)
        w = torch.as_tensor(self._w, dtype=torch.float64)
        norms = grads.double().norm(dim=1)
        gw = w * norms
        ratio = losses / torch.as_tensor(self._initial, dtype=torch.float64)
        r = ratio / ratio.mean().clamp_min(1e-12)
        target = gw.mean() * r ** self.alpha
        # d/dw_t sum_k |w_k ||g_k|| - target_k| with the target held constant
        new = (w - self.lr * torch.sign(gw - target) * norms).clamp_min(1e-3)
        self._w = new * m / new.sum()
        return w


_WEIGHTINGS = {'DWA': DWA, 'UncertaintyWeighting': UncertaintyWeighting, 'GradNorm': GradNorm}


def build_weighting(cfg: dict | LossWeighting | None) -> LossWeighting | None:
    """Build from ``dict(type='DWA' | 'UncertaintyWeighting' | 'GradNorm', ...)``; ``None``: static weights."""
    if cfg is None or isinstance(cfg, LossWeighting):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop('type', None)
    if kind not in _WEIGHTINGS:
        raise ValueError(f'unknown loss weighting {kind!r}; choose from {sorted(_WEIGHTINGS)}')
    return _WEIGHTINGS[kind](**cfg)
