# BEVFusion's 20-epoch map-segmentation schedule (8 GPUs x 4; configs/nuscenes/seg/fusion-bev256d2-lss.yaml:
# AdamW lr 1e-4, weight decay 0.01, no decay on Swin's position tables, gradients clipped at 35,
# lr_config/momentum_config policy 'cyclic'). mmcv's cyclic policies, by iteration: over the first
# 40% (epochs 0-8) the learning rate rises 1x -> 10x and beta1 falls 1x -> (0.85 / 0.95)x, over the
# last 60% the learning rate anneals 10x -> 1e-4x and beta1 returns to 1x; both cosine. With
# AdamW's beta1 = 0.9 that is 0.9 -> 0.805 -> 0.9. mmcv's momentum targets are *ratios* of the
# initial beta1, so they are eta_min_ratio here (an absolute eta_min=1 would drive beta1 to 1.0), and
# so are the learning-rate targets (a changed optimizer lr carries the schedule with it).
# tests/test_configs/test_bevfusion_recipe.py steps these schedulers against mmcv's formulas.
optim_wrapper = dict(
    type='GuardedOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    # Matches only the Swin-T camera backbone's parameters (mmdet's SwinTransformer names).
    paramwise_cfg=dict(custom_keys=dict(absolute_pos_embed=dict(decay_mult=0.0),
                                        relative_position_bias_table=dict(decay_mult=0.0))),
    clip_grad=dict(max_norm=35, norm_type=2),
    # BEVFusion trains in mixed precision: default.yaml fp16.loss_scale.growth_interval 2000 makes
    # mmcv's Fp16OptimizerHook (autocast float16, a dynamic GradScaler from 2^16, doubled after
    # 2000 steps without overflow). On a machine without CUDA this trains in fp32 (logged).
    amp='float16', growth_interval=2000)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=8, eta_min_ratio=10.0, begin=0, end=8, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=12, eta_min_ratio=1e-4, begin=8, end=20, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingMomentum', T_max=8, eta_min_ratio=0.85 / 0.95, begin=0, end=8, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingMomentum', T_max=12, eta_min_ratio=1.0, begin=8, end=20, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=20)
# BEVFusion evaluates in float16 too: its tools/test.py calls wrap_fp16_model when the config has fp16,
# and its EvalHook validates the model Fp16OptimizerHook wrapped. Without CUDA: fp32 (logged).
val_cfg = dict(type='AmpValLoop', amp='float16')
test_cfg = dict(type='AmpTestLoop', amp='float16')
auto_scale_lr = dict(enable=False, base_batch_size=32)
