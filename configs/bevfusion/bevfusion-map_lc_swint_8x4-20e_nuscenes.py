# BEVFusion-MIT's camera+LiDAR BEV map segmentation on nuScenes, module for module
# (configs/nuscenes/seg/fusion-bev256d2-lss.yaml with seg/default.yaml and nuscenes/default.yaml):
# 0.1 m voxels over +-51.2 m (1024 x 1024 x 41), the plain LSS view transform at 0.4 m (no LiDAR
# depth), Swin-T with drop_path 0.3, 90k/120k voxels, the map head on the 0.5 m grid, the 20-epoch
# cyclic schedule. Its public checkpoint converts into this config with tools/misc/convert_bevfusion.py.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/nuscenes_det-map.py',
          '../_base_/models/fuller_lc_swint_nuscenes.py', '../_base_/schedules/cyclic-20e.py']
geometry = dict(point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0], voxel_size=[0.1, 0.1, 0.2])
model = dict(
    encoders=dict(
        camera=dict(backbone=dict(drop_path_rate=0.3),
                    vtransform=dict(_delete_=True, type='LSSViewTransform', in_channels=256, out_channels=80,
                                    zbound=(-10.0, 10.0, 20.0), dbound=(1.0, 60.0, 0.5), downsample=2,
                                    cell_index='trunc')),
        lidar=dict(voxelize=dict(max_voxels=(90000, 120000)))),
    heads=dict(det=None))
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
