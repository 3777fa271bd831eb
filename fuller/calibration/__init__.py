"""Multi-level gradient calibration math (pure PyTorch, no mmengine)."""

from .inter import FullerInter, InterRule, Mean, Sum, TorchJDRule, build_inter_rule
from .intra import ModalityCalibrator, build_intra, intra_calibrate

__all__ = ['FullerInter', 'InterRule', 'Mean', 'Sum', 'TorchJDRule', 'build_inter_rule', 'ModalityCalibrator',
           'build_intra', 'intra_calibrate']
