# Intra-gradient (modality) calibration only.
_base_ = ['./_study.py']
optim_wrapper = dict(intra=dict(type='ModalityCalibrator', target='mean'))
