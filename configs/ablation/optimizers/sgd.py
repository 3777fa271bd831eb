# Swap the base's optimizer for SGD with momentum (merged over any variant by
# `tools/ablate.py --with configs/ablation/optimizers/sgd.py`). Under SGD a per-branch gradient
# scale is that branch's step size, which Adam-type optimizers normalise away (docs/method.md).
# The base's schedule, clipping and precision stay.
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
