# Camera-only multi-task model: no LiDAR branch (and so no fuser, no modality pair to calibrate).
_base_ = ['./_study.py']
model = dict(encoders=dict(lidar=None))
