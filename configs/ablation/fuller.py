# FULLER: inter- and intra-gradient calibration.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='FullerInter', normalize='mean'),
                     intra=dict(type='ModalityCalibrator', target='mean'))
