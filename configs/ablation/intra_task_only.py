# Per-task modality calibration only (summed task gradients; docs/method.md).
_base_ = ['./_study.py']
optim_wrapper = dict(intra=dict(type='ModalityCalibrator', target='mean', per_task=True))
