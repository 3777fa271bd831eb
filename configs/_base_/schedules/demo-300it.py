# Non-finite steps are skipped and counted (GuardedOptimWrapper); 300 iterations with warm-up and cosine.
optim_wrapper = dict(type='GuardedOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=270, eta_min=1e-5, by_epoch=False, begin=30, end=300),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
