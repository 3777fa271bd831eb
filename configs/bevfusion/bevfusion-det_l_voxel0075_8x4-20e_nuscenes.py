# Stage 1 of BEVFusion-MIT's detection recipe: the LiDAR-only TransFusion-L detector
# (configs/nuscenes/det/transfusion/secfpn/lidar/voxelnet_0p075.yaml with lidar/default.yaml and the
# files they extend): no camera branch and no fuser (lidar/default.yaml: encoders.camera null;
# det/default.yaml: fuser null), 0.075 m voxels, the residual SparseEncoder, SECOND + SECONDFPN and the
# TransFusion head of ./bevfusion-det_lc_swint_8x4-6e_nuscenes.py; CBGS; GT-paste (ObjectPaste,
# default.yaml db_sampler) in epochs 0-14 (lidar/default.yaml: gt_paste_stop_epoch 15); AdamW lr 1e-4
# with the cyclic schedule over 20 epochs (secfpn/default.yaml, default.yaml max_epochs 20). The images
# are not loaded: the model has no camera. Needs the GT database of tools/create_data.py.
# Stage 2: ./bevfusion-det_lc_swint_8x4-6e_nuscenes-staged.py loads this stage's last checkpoint.
# Checked key by key in tests/test_configs/test_bevfusion_recipe.py; docs/nuscenes.md.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/nuscenes_det-map.py',
          '../_base_/models/fuller_lc_swint_nuscenes.py', '../_base_/schedules/cyclic-20e.py']
model = dict(encoders=dict(camera=None), fuser=None, heads=dict(map=None))
sweeps = 9
_sample_groups = dict(car=2, truck=3, construction_vehicle=7, bus=4, trailer=6, barrier=2, motorcycle=6, bicycle=6,
                      pedestrian=2, traffic_cone=2)
train_pipeline = [
    # BEVFusion's LoadPointsFromMultiSweeps (default.yaml: sweeps_num 9, pad_empty_sweeps, remove_close):
    # 9 of the info's 10 previous sweeps drawn at random, the keyframe repeated where a scene starts,
    # the car body's points removed in a 2 m square.
    dict(type='LoadMultiSweepPoints', sweeps=sweeps, test_mode=False, pad_empty_sweeps=True, close_region='square'),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectPaste', stop_epoch=15,
         db_sampler=dict(info_path='nuscenes_dbinfos_train.pkl', rate=1.0,
                         prepare=dict(filter_by_difficulty=[-1], filter_by_min_points={c: 5 for c in _sample_groups}),
                         sample_groups=_sample_groups, points_loader=dict(load_dim=5, use_dim=5))),
    dict(type='BEVAugmentation', rot_range=(-0.78539816, 0.78539816), scale_range=(0.9, 1.1),
         trans_std=(0.5, 0.5, 0.5), is_train=True),
    dict(type='ObjectRangeFilter'),
    dict(type='ObjectNameFilter'),
    dict(type='PointsRangeFilter'),
    dict(type='mmdet3d.PointShuffle'),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    # the nearest 9 sweeps (BEVFusion's test pipeline draws them at random as in training; docs/nuscenes.md)
    dict(type='LoadMultiSweepPoints', sweeps=sweeps, pad_empty_sweeps=True, close_region='square'),
    dict(type='BEVAugmentation', is_train=False),
    dict(type='PointsRangeFilter'),
    dict(type='PackMultiTaskInputs'),
]
_lidar = dict(use_lidar=True, use_camera=False)
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline, modality=_lidar)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline, modality=_lidar))
test_dataloader = val_dataloader
val_evaluator = [dict(type='NuScenesDetMetric', data_root='data/nuscenes/', version='v1.0-trainval')]
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
