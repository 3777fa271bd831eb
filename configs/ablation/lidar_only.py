# LiDAR-only multi-task model: no camera branch (and so no fuser, no modality pair to calibrate).
_base_ = ['./_study.py']
model = dict(encoders=dict(camera=None))
