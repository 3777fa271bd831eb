# Inter-task rule UPGrad (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='UPGrad'), intra=dict(type='ModalityCalibrator', target='mean'))
