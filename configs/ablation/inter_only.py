# Inter-gradient (task) calibration only.
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='FullerInter', normalize='mean'))
