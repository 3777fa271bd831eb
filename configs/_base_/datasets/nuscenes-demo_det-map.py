# FULLER's embedded demo dataset (python tools/create_demo_data.py; tools/create_data.py).
# The class lists, cameras and attribute conventions are the dataset's metainfo
# (fuller/datasets/metainfo.py); override them with a top-level `metainfo = dict(classes=[...])`.
# The grid is stated once, in `geometry`: the datasets fill their pipelines from it and the model
# derives its grids from it (tools and FullerRunner hand it over: fuller.engine.resolve_config).
dataset_type = 'NuScenesMultiTaskDataset'
data_root = 'data/nuscenes-demo/'
geometry = dict(
    point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0],
    voxel_size=[0.8, 0.8, 0.5],  # LiDAR voxels; 128 x 128 x 16
    bev_stride=2,  # voxels per shared BEV cell: 64 x 64 at 1.6 m
    image_size=(96, 256),  # from the demo's 320 x 180 cameras: resized by 0.73-0.87 (test 0.8), bottom crop
    map_bound=dict(xbound=(-50.0, 50.0, 1.0), ybound=(-50.0, 50.0, 1.0)),  # 100 x 100 map grid
)
# The demo's drivable area is its road surface, the map's road segments and lanes (BEVFusion's
# 'drivable_area*'), without the car parks its `drivable_area` layer also covers (BEVFusion's
# rule for 'drivable_area', which the nuScenes configs follow): the definition every demo result
# so far was measured with (docs/results/demo_world.md).
metainfo = dict(map_layers=dict(drivable_area=('road_segment', 'lane')))
sweeps = 4

# cache_mb: the training samples' points and decoded images are read once and kept in memory
# for the epochs after the first (the demo's 192: about 270 + 200 MiB; per loader process).
train_pipeline = [
    dict(type='LoadMultiSweepPoints', sweeps=sweeps, cache_mb=512),
    dict(type='LoadMultiViewImages', cache_mb=512),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ImageAug3D', resize_lim=(0.73, 0.87), bot_pct_lim=(0.0, 0.1), rand_flip=True, is_train=True),
    dict(type='BEVAugmentation', rot_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), is_train=True),
    dict(type='LoadBEVMapMask', line_width=1.0),
    dict(type='ObjectRangeFilter'),
    dict(type='ObjectNameFilter'),
    dict(type='PointsRangeFilter'),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadMultiSweepPoints', sweeps=sweeps),
    dict(type='LoadMultiViewImages'),
    dict(type='ImageAug3D', resize_lim=(0.8, 0.8), bot_pct_lim=(0.05, 0.05), is_train=False),
    dict(type='BEVAugmentation', is_train=False),
    dict(type='LoadBEVMapMask', line_width=1.0),
    dict(type='PointsRangeFilter'),
    dict(type='PackMultiTaskInputs'),
]
# num_workers='auto': no worker processes on 2 cores (they slow the model's two threads down
# more than loading in the main process costs), half the CPUs up to 4 on larger machines.
train_dataloader = dict(
    batch_size=2, num_workers='auto', persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_train.pkl', pipeline=train_pipeline,
                 test_mode=False, box_type_3d='LiDAR'))
val_dataloader = dict(
    batch_size=1, num_workers='auto', persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_val.pkl', pipeline=test_pipeline,
                 test_mode=True, box_type_3d='LiDAR'))
test_dataloader = val_dataloader
val_evaluator = [dict(type='NuScenesDetMetric', data_root=data_root, version='v1.0-mini'),
                 dict(type='BEVMapIoUMetric')]
test_evaluator = val_evaluator
