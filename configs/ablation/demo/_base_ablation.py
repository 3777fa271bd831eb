# Shared base of the demo ablation: the demo model and data, a 150-iteration schedule that
# fits a 2-core CPU, and the calibrated wrapper in measure-only mode (inter Sum adds the
# task gradients, intra target 'none' passes them unchanged): numerically the naive
# baseline, but every run logs the same diagnostics (task-gradient cosine, camera/LiDAR
# gradient ratio) every iteration. Variants override optim_wrapper / heads.
_base_ = ['../../fuller/naive_lc_r18-tiny_1x2-450it_nuscenes-demo-det-map.py']
ablation_iters = 150
optim_wrapper = dict(_delete_=True, type='CalibratedOptimWrapper', inter=dict(type='Sum'),
                     intra=dict(type='ModalityCalibrator', target='none'),
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01), clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=15),
    dict(type='CosineAnnealingLR', T_max=ablation_iters - 15, eta_min=1e-5, by_epoch=False, begin=15,
         end=ablation_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=ablation_iters, val_interval=ablation_iters + 1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=ablation_iters, max_keep_ckpts=1))
log_processor = dict(window_size=1)
