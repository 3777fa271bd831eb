"""DistributedDataParallel that keeps the calibrated step.

mmengine's ``MMDistributedDataParallel.train_step`` computes summed losses and steps, which
would silently bypass gradient calibration. This wrapper hands the step to the optimizer
wrapper's ``train_step`` with itself as the module to run the forward through, so DDP's
``forward`` prepares the reducer exactly once per step. In the calibrated step the per-task gradients (at
the detached leaf of the shared feature and of the head parameters) are taken with
``autograd.grad``, which does not fire the reducer's parameter hooks, and the one backward of
the surrogate loss reduces every parameter gradient once.

Whether the calibration sees each rank's samples or the global batch is the optimizer
wrapper's ``sync`` (``'global'`` by default; see :class:`~fuller.engine.CalibratedOptimWrapper`).
"""

from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS as ROOT_MODEL_WRAPPERS

from fuller.registry import MODEL_WRAPPERS


# Also in mmengine's root registry: Runner.wrap_model looks the type up there by plain name.
@ROOT_MODEL_WRAPPERS.register_module()
@MODEL_WRAPPERS.register_module()
class FullerDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose ``train_step`` is the optimizer wrapper's, run through DDP."""

    def train_step(self, data, optim_wrapper: OptimWrapper) -> dict:
        if hasattr(optim_wrapper, 'train_step'):
            return optim_wrapper.train_step(self, data)
        return super().train_step(data, optim_wrapper)
