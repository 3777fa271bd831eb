# Naive multi-task baseline: summed losses, plain optimizer step (non-finite steps skipped).
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/nuscenes-demo_det-map.py',
          '../_base_/models/fuller_lc_r18-tiny_demo.py', '../_base_/schedules/demo-900it.py']
