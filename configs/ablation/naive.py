# Naive multi-task training: summed task losses, no calibration (diagnostics measured only).
_base_ = ['./_study.py']
