# Inter-task rule AlignedMTL (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='AlignedMTL'), intra=dict(type='ModalityCalibrator', target='mean'))
