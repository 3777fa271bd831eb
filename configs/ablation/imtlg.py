# Inter-task rule IMTLG (torchjd) with FULLER's modality calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='IMTLG'), intra=dict(type='ModalityCalibrator', target='mean'))
