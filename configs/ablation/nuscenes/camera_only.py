# Camera-only multi-task model (no LiDAR branch, no fuser; intra calibration has no pair).
_base_ = ['./_base_ablation.py']
model = dict(encoders=dict(lidar=None), fuser=None, decoder=dict(backbone=dict(in_channels=80)))
optim_wrapper = dict(intra=None)
