# Camera-only single-task map model: no LiDAR branch and no detection head. BEVFusion's map
# table compares single-modality models trained on the map alone; this and lidar_map_only.py
# are that setting, next to the multi-task camera_only / lidar_only variants.
_base_ = ['./_study.py']
model = dict(encoders=dict(lidar=None), heads=dict(det=None))
