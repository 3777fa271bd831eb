# Loss-weighting baseline: Dynamic Weight Average (summed gradients, no modality calibration).
_base_ = ['./_study.py']
optim_wrapper = dict(weighting=dict(type='DWA', temperature=2.0, window=50))
