"""FULLER: multi-modality multi-task 3D perception with multi-level gradient calibration."""

__version__ = '0.1.0'
