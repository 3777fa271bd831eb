# Inter-gradient (task) calibration only.
_base_ = ['./_base_ablation.py']
optim_wrapper = dict(inter=dict(type='FullerInter', normalize='mean'))
