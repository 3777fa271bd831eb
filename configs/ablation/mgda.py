# Inter-task rule MGDA (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='MGDA'), intra=dict(type='ModalityCalibrator', target='mean'))
