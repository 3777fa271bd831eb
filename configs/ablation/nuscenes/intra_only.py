# Intra-gradient (modality) calibration only.
_base_ = ['./_base_ablation.py']
optim_wrapper = dict(intra=dict(type='ModalityCalibrator', target='mean'))
