# Shared base of the nuScenes ablation (BEVFusion settings, 20 epochs on 8 GPUs x 4): the
# calibrated wrapper in measure-only mode (Sum + intra 'none') is numerically the naive
# baseline and logs the same diagnostics as the calibrated variants. Variants override it.
_base_ = ['../../fuller/naive_lc_swint_8x4-20e_nuscenes-det-map.py']
optim_wrapper = dict(_delete_=True, type='CalibratedOptimWrapper', inter=dict(type='Sum'),
                     intra=dict(type='ModalityCalibrator', target='none'),
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.95, 0.99), weight_decay=0.01), clip_grad=dict(max_norm=35, norm_type=2))
