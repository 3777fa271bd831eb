# Inter-task rule PCGrad (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='PCGrad'), intra=dict(type='ModalityCalibrator', target='mean'))
