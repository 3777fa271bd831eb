# FULLER's embedded demo dataset (python tools/create_demo_data.py; tools/create_data.py).
dataset_type = 'NuScenesMultiTaskDataset'
data_root = 'data/nuscenes-demo/'
class_names = ['car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle', 'motorcycle', 'pedestrian',
               'traffic_cone', 'barrier']
map_classes = ['drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider']
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
map_bound = dict(xbound=(-50.0, 50.0, 1.0), ybound=(-50.0, 50.0, 1.0))
image_size = (128, 352)
sweeps = 4
metainfo = dict(classes=class_names)

train_pipeline = [
    dict(type='LoadMultiSweepPoints', sweeps=sweeps),
    dict(type='LoadMultiViewImages'),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ImageAug3D', final_dim=image_size, resize_lim=(1.0, 1.2), bot_pct_lim=(0.0, 0.1), rand_flip=True,
         is_train=True),
    dict(type='BEVAugmentation', rot_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), is_train=True),
    dict(type='LoadBEVMapMask', dataroot=data_root, line_width=1.0, **map_bound),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    dict(type='LoadMultiSweepPoints', sweeps=sweeps),
    dict(type='LoadMultiViewImages'),
    dict(type='ImageAug3D', final_dim=image_size, resize_lim=(1.1, 1.1), bot_pct_lim=(0.05, 0.05), is_train=False),
    dict(type='BEVAugmentation', is_train=False),
    dict(type='LoadBEVMapMask', dataroot=data_root, line_width=1.0, **map_bound),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackMultiTaskInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_train.pkl', pipeline=train_pipeline,
                 metainfo=metainfo, test_mode=False, box_type_3d='LiDAR'))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_val.pkl', pipeline=test_pipeline,
                 metainfo=metainfo, test_mode=True, box_type_3d='LiDAR'))
test_dataloader = val_dataloader
# The demo world labels still vehicles 'vehicle.stopped' (real nuScenes: mostly 'vehicle.parked').
still_attributes = {c: 'vehicle.stopped' for c in ('car', 'truck', 'trailer', 'bus', 'construction_vehicle')}
val_evaluator = [
    dict(type='NuScenesDetMetric', data_root=data_root, version='v1.0-mini', classes=class_names,
         still_attributes=still_attributes),
    dict(type='BEVMapIoUMetric', classes=map_classes),
]
test_evaluator = val_evaluator
