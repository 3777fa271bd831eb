# LiDAR-only single-task map model: no camera branch and no detection head (see
# camera_map_only.py).
_base_ = ['./_study.py']
model = dict(encoders=dict(camera=None), heads=dict(det=None))
