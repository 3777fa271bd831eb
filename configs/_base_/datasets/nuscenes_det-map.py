# Full nuScenes (v1.0-trainval) for detection + map segmentation, BEVFusion's input settings:
# 256x704 images, 10 LiDAR sweeps, 0.5 m map grid over +-50 m, and its augmentation
# (configs/nuscenes/default.yaml: augment2d resize 0.38-0.55 / test 0.48, rotate +-5.4 deg, flip;
# augment3d scale 0.9-1.1, rotate +-pi/4, translate N(0, 0.5) before the scale; PointShuffle).
# tests/test_configs/test_bevfusion_recipe.py checks each value. Infos: tools/create_data.py.
# Class lists, cameras and attribute conventions: the dataset's metainfo
# (fuller/datasets/metainfo.py). The grid is stated once, in `geometry` (see the demo base).
dataset_type = 'NuScenesMultiTaskDataset'
data_root = 'data/nuscenes/'
geometry = dict(
    point_cloud_range=[-54.0, -54.0, -5.0, 54.0, 54.0, 3.0],
    voxel_size=[0.075, 0.075, 0.2],  # LiDAR voxels; 1440 x 1440 x 40
    bev_stride=8,  # voxels per shared BEV cell: 180 x 180 at 0.6 m
    image_size=(256, 704),
    map_bound=dict(xbound=(-50.0, 50.0, 0.5), ybound=(-50.0, 50.0, 0.5)),  # 200 x 200 map grid
)
metainfo = dict()
sweeps = 9  # + the keyframe = 10 sweeps

train_pipeline = [
    # BEVFusion's LoadPointsFromMultiSweeps (default.yaml: sweeps_num 9, pad_empty_sweeps, remove_close):
    # 9 of the info's 10 previous sweeps drawn at random, the keyframe repeated where a scene starts,
    # the car body's points removed in a 2 m square.
    dict(type='LoadMultiSweepPoints', sweeps=sweeps, test_mode=False, pad_empty_sweeps=True, close_region='square'),
    # uint8 as decoded (as BEVFusion loads them): PIL resamples uint8, the float32 copy would be discarded
    dict(type='LoadMultiViewImages', to_float32=False),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    # BEVFusion's ImageAug3D, resampled as it does (PIL: bicubic resize, nearest rotation)
    dict(type='ImageAug3D', resize_lim=(0.38, 0.55), bot_pct_lim=(0.0, 0.0), rot_lim=(-5.4, 5.4), rand_flip=True,
         is_train=True, backend='pillow'),
    dict(type='BEVAugmentation', rot_range=(-0.78539816, 0.78539816), scale_range=(0.9, 1.1),
         trans_std=(0.5, 0.5, 0.5), is_train=True),
    dict(type='LoadBEVMapMask'),
    dict(type='ObjectRangeFilter'),
    dict(type='ObjectNameFilter'),
    dict(type='PointsRangeFilter'),
    # Hard voxelization keeps the first points of a voxel and the first voxels: shuffle first.
    dict(type='mmdet3d.PointShuffle'),
    dict(type='PackMultiTaskInputs'),
]
test_pipeline = [
    # the nearest 9 sweeps (BEVFusion's test pipeline draws them at random as in training; docs/nuscenes.md)
    dict(type='LoadMultiSweepPoints', sweeps=sweeps, pad_empty_sweeps=True, close_region='square'),
    dict(type='LoadMultiViewImages', to_float32=False),
    dict(type='ImageAug3D', resize_lim=(0.48, 0.48), bot_pct_lim=(0.0, 0.0), is_train=False, backend='pillow'),
    dict(type='BEVAugmentation', is_train=False),
    dict(type='LoadBEVMapMask'),
    dict(type='PointsRangeFilter'),
    dict(type='PackMultiTaskInputs'),
]
# Class-balanced grouping and sampling (CBGS, BEVFusion's data.train type): every class gets the same
# number of (sample, class) draws, so one epoch is about 4.5x the train split on nuScenes. The
# draws use numpy's generator, which the runner seeds alike on every rank (randomness.seed).
# FULLER's CBGSDataset is mmdet3d's, with an error naming the classes a split has no sample of.
train_dataloader = dict(
    batch_size=4, num_workers=4, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CBGSDataset',
        dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_train.pkl',
                     pipeline=train_pipeline, test_mode=False, box_type_3d='LiDAR', use_valid_flag=True)))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='nuscenes_infos_val.pkl', pipeline=test_pipeline,
                 test_mode=True, box_type_3d='LiDAR'))
test_dataloader = val_dataloader
val_evaluator = [dict(type='NuScenesDetMetric', data_root=data_root, version='v1.0-trainval'),
                 dict(type='BEVMapIoUMetric')]
test_evaluator = val_evaluator
