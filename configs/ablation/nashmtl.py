# Inter-task rule NashMTL (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='NashMTL', n_tasks=2), intra=dict(type='ModalityCalibrator', target='mean'))
