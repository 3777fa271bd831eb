# Half the demo main job's schedule, for the demo study (merged over every variant by
# `tools/ablate.py --with configs/ablation/schedules/demo-450it.py`): 450 iterations, the same
# warm-up and cosine decay. Half the budget fits twice the seeds into the same CPU time; the
# study asks only that detection learns (det-only mAP >= 0.25), not that the targets are met.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=420, eta_min=1e-5, by_epoch=False, begin=30, end=450),
]
train_cfg = dict(max_iters=450)  # no validation during training (demo-900it.py's val_begin)
