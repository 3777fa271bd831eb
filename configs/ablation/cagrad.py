# Inter-task rule CAGrad (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='CAGrad', c=0.5), intra=dict(type='ModalityCalibrator', target='mean'))
