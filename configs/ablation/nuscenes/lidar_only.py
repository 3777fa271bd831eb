# LiDAR-only multi-task model (no camera branch, no fuser; intra calibration has no pair).
_base_ = ['./_base_ablation.py']
model = dict(encoders=dict(camera=None), fuser=None, decoder=dict(backbone=dict(in_channels=256)))
optim_wrapper = dict(intra=None)
