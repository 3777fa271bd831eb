# BEVFusion-MIT's camera+LiDAR detector on nuScenes, module for module
# (configs/nuscenes/det/transfusion/secfpn/camera+lidar/swint_v0p075/convfuser.yaml): the network of
# ../_base_/models/fuller_lc_swint_nuscenes.py without the map head, BEVFusion's inputs and
# augmentation, its 6-epoch fine-tuning schedule. BEVFusion starts this stage from its LiDAR-only
# detector (--load-from); its public checkpoint converts into this config with
# tools/misc/convert_bevfusion.py (README, "Start from BEVFusion").
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/nuscenes_det-map.py',
          '../_base_/models/fuller_lc_swint_nuscenes.py', '../_base_/schedules/cosine-6e.py']
model = dict(heads=dict(map=None))
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
