# Loss-weighting baseline: homoscedastic uncertainty weighting (summed gradients, no modality calibration).
_base_ = ['./_study.py']
optim_wrapper = dict(weighting=dict(type='UncertaintyWeighting', lr=0.01))
