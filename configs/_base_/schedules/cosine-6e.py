# BEVFusion's 6-epoch camera+LiDAR detection schedule (8 GPUs x 4), the fine-tuning stage after its
# LiDAR-only detector: configs/nuscenes/det/transfusion/secfpn/default.yaml (AdamW, weight decay
# 0.01, gradients clipped at 35, momentum_config policy 'cyclic') with
# det/transfusion/secfpn/camera+lidar/default.yaml (lr 2e-4, max_epochs 6) and
# .../camera+lidar/swint_v0p075/default.yaml (lr_config: CosineAnnealing, linear warm-up over 500
# iterations from 1/3, min_lr_ratio 1e-3). mmcv's LrUpdaterHook defaults to by_epoch=True, so the
# cosine steps once an epoch (epoch e at annealing_cos(lr, 1e-3 lr, e / 6): the last epoch trains at
# 6.8% of lr, never at the minimum) and the warm-up goes by iteration within epoch 0. mmcv's cyclic
# momentum goes by iteration (CyclicMomentumUpdaterHook allows no other): beta1 falls to
# (0.85 / 0.95)x over the first 40% (2.4 epochs) and returns to 1x over the rest, cosine; the
# targets are ratios of the initial beta1 (eta_min_ratio). No paramwise_cfg: the detection yaml
# has none (the map yaml's no-decay keys are in ./cyclic-20e.py).
optim_wrapper = dict(
    type='GuardedOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=dict(max_norm=35, norm_type=2),
    # BEVFusion trains in mixed precision: default.yaml fp16.loss_scale.growth_interval 2000 makes
    # mmcv's Fp16OptimizerHook (autocast float16, a dynamic GradScaler from 2^16, doubled after
    # 2000 steps without overflow). On a machine without CUDA this trains in fp32 (logged).
    amp='float16', growth_interval=2000)
param_scheduler = [
    # mmcv's warm-up: lr x (1 - (1 - i / 500) (1 - 1/3)) for iterations i < 500; mmengine's LinearLR
    # reaches its end factor at step end - begin - 1, so end=501 puts it at iteration 500 too
    dict(type='LinearLR', start_factor=0.33333333, by_epoch=False, begin=0, end=501),
    dict(type='CosineAnnealingLR', T_max=6, eta_min_ratio=1e-3, begin=0, end=6, by_epoch=True),
    dict(type='CosineAnnealingMomentum', T_max=2.4, eta_min_ratio=0.85 / 0.95, begin=0, end=2.4, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingMomentum', T_max=3.6, eta_min_ratio=1.0, begin=2.4, end=6, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=6, val_interval=6)
# BEVFusion evaluates in float16 too: its tools/test.py calls wrap_fp16_model when the config has fp16,
# and its EvalHook validates the model Fp16OptimizerHook wrapped. Without CUDA: fp32 (logged).
val_cfg = dict(type='AmpValLoop', amp='float16')
test_cfg = dict(type='AmpTestLoop', amp='float16')
auto_scale_lr = dict(enable=False, base_batch_size=32)
