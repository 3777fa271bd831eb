# Loss-weighting baseline: GradNorm at the shared feature (summed gradients, no modality calibration).
_base_ = ['./_study.py']
optim_wrapper = dict(weighting=dict(type='GradNorm', alpha=1.5, lr=0.025))
