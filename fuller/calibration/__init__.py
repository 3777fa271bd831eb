"""Multi-level gradient calibration math (pure PyTorch, no mmengine)."""

from .inter import FullerInter, InterRule, Mean, Sum, TorchJDRule, build_inter_rule
from .intra import ModalityCalibrator, TaskModalityCalibration, build_intra, intra_calibrate
from .weighting import DWA, GradNorm, LossWeighting, UncertaintyWeighting, build_weighting

__all__ = ['DWA', 'FullerInter', 'GradNorm', 'InterRule', 'LossWeighting', 'Mean', 'ModalityCalibrator', 'Sum',
           'TaskModalityCalibration', 'TorchJDRule', 'UncertaintyWeighting', 'build_inter_rule', 'build_intra',
           'build_weighting', 'intra_calibrate']
