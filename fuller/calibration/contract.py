"""What a model gives the calibrated step, declared once.

The engine's :class:`~fuller.engine.CalibratedOptimWrapper` trains any model that has
``data_preprocessor`` and a ``forward(..., mode='tasks', modality=...)`` returning
:class:`TaskOutputs` (``FullerNet`` does; so do the tests' toy models). ``task_parameters()`` is
optional: without it every trainable parameter is asked for in the task passes (correct, a
little slower).
"""

from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ['CalibratedModel', 'ModalityHook', 'TaskOutputs']

# Applied by the model to the (camera BEV, LiDAR BEV) pair on its way into the fuser; returns
# the pair to fuse (an identity in value: the calibrated step's modality stage).
ModalityHook = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class TaskOutputs(NamedTuple):
    """The ``'tasks'`` forward's result.

    Attributes:
        losses: per-task loss groups, ``{'det': {'loss_heatmap': ...}, 'map': {'loss_focal': ...}}``
            (entries whose name contains ``'loss'`` are summed into the task's loss).
        shared: the shared feature ``F`` (in the graph of the backbone).
        leaf: ``F'``, the detached leaf copy of ``F`` the heads ran on.
        aux: auxiliary losses of the branches upstream of ``F`` (e.g. the camera's depth
            supervision, ``{'camera.loss_depth': ...}``): not tasks, so neither calibrated nor
            weighted; the step adds them to its one backward through the backbone.
    """

    losses: dict[str, dict[str, Tensor]]
    shared: Tensor
    leaf: Tensor
    aux: dict[str, Tensor] = {}


@runtime_checkable
class CalibratedModel(Protocol):
    """The model contract of the calibrated step."""

    def data_preprocessor(self, data: dict, training: bool = False) -> dict:
        """The batch as keyword arguments of ``forward``."""

    def forward(self, *args, mode: str = 'tensor', modality: ModalityHook | None = None, **kwargs):
        """With ``mode='tasks'``: :class:`TaskOutputs`, the camera/LiDAR pair (if the model has
        one) passed through ``modality`` before the fuser."""


def task_parameters(model: nn.Module) -> list[Tensor]:
    """The trainable parameters downstream of the shared feature (``model.task_parameters()``),
    else every trainable parameter of ``model``."""
    params: Iterable[Tensor] = model.task_parameters() if hasattr(model, 'task_parameters') else model.parameters()
    return [p for p in params if p.requires_grad]
