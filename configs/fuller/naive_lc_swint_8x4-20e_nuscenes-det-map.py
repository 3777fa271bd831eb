# Naive multi-task baseline on nuScenes: BEVFusion's camera+LiDAR network (TransFusion detection
# head, BEVFusion's map head) and recipe trained on both tasks with the summed losses.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/nuscenes_det-map.py',
          '../_base_/models/fuller_lc_swint_nuscenes.py', '../_base_/schedules/cyclic-20e.py']
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
