# 20 epochs, AdamW, linear warm-up then cosine (BEVFusion-style). Learning rate for 8 GPUs x 4.
optim_wrapper = dict(type='GuardedOptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.01),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.33333333, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', T_max=20, eta_min=2e-7, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=32)
