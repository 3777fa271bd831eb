"""Multi-level gradient calibration math (pure PyTorch, no mmengine)."""

from .contract import CalibratedModel, TaskOutputs
from .inter import FullerInter, InterRule, Mean, Sum, TorchJDRule, build_inter_rule
from .intra import ModalityCalibrator, ModalityStage, build_intra
from .weighting import DWA, GradNorm, LossWeighting, UncertaintyWeighting, build_weighting

__all__ = ['DWA', 'CalibratedModel', 'FullerInter', 'GradNorm', 'InterRule', 'LossWeighting', 'Mean',
           'ModalityCalibrator', 'ModalityStage', 'Sum', 'TaskOutputs', 'TorchJDRule', 'UncertaintyWeighting',
           'build_inter_rule', 'build_intra', 'build_weighting']
