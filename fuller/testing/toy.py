"""The smallest models of the calibrated step's contract (:class:`fuller.calibration.CalibratedModel`),
for tests of the step that need exact arithmetic or hand-built graphs."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from fuller.calibration import TaskOutputs

__all__ = ['ContractModel', 'two_head_linear']


class ContractModel(nn.Module):
    """A model of the contract assembled from modules and two functions.

    ``forward(inputs, data_samples, mode='tasks', modality=None)``: with ``pair`` given,
    ``pair(parts, inputs)`` makes the (camera, LiDAR) pair, which passes through ``modality``;
    then ``shared(parts, x)`` makes ``F`` (``x``: the pair, or ``inputs`` without one), and
    ``losses(parts, F', data_samples)`` the task loss groups on its detached leaf ``F'``.

    Args:
        parts: the modules (their parameters are the model's).
        shared: ``(parts, x) -> F``.
        losses: ``(parts, leaf, data_samples) -> {task: {name: loss}}``.
        pair: ``(parts, inputs) -> (cam, lidar)``; ``None``: single-modality.
        heads: names of the parts downstream of ``F`` (``task_parameters``); empty: all parameters.
    """

    def __init__(self, parts: dict[str, nn.Module], shared: Callable, losses: Callable, pair: Callable | None = None,
                 heads: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self._shared, self._losses, self._pair = shared, losses, pair
        self.heads = tuple(heads)

    def data_preprocessor(self, data: dict, training: bool = False) -> dict:
        return data

    def forward(self, inputs, data_samples=None, mode: str = 'tasks', modality=None) -> TaskOutputs:
        if mode != 'tasks':
            raise ValueError(f"ContractModel has only mode='tasks', got {mode!r}")
        x = inputs
        if self._pair is not None:
            x = self._pair(self.parts, inputs)
            if modality is not None:
                x = modality(*x)
        shared: Tensor = self._shared(self.parts, x)
        leaf = shared.detach().requires_grad_(True)
        return TaskOutputs(self._losses(self.parts, leaf, data_samples), shared, leaf)

    def task_parameters(self):
        names = self.heads or tuple(self.parts)
        return [p for n in names for p in self.parts[n].parameters()]

    def train_step(self, data: dict, optim_wrapper) -> dict:
        return optim_wrapper.train_step(self, data)


def two_head_linear(width: int = 8, map_scale: float = 1e-3, seed: int = 0) -> ContractModel:
    """Linear backbone -> shared feature -> two linear heads with squared-output losses, the map
    task ``map_scale`` times smaller (FULLER's rule then weights it up)."""
    torch.manual_seed(seed)
    return ContractModel(
        dict(backbone=nn.Linear(width, width), det=nn.Linear(width, 1), map=nn.Linear(width, 1)),
        shared=lambda p, x: p['backbone'](x),
        losses=lambda p, f, _: {'det': {'loss_a': p['det'](f).float().pow(2).mean()},
                                'map': {'loss_b': map_scale * p['map'](f).float().pow(2).mean()}},
        heads=('det', 'map'))
