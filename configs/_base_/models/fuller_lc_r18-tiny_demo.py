# A small camera+LiDAR multi-task model that trains on a CPU (demo data: 0.8 m voxels,
# 64x64 shared BEV at 1.6 m, 100x100 map grid at 1.0 m).
voxel_size = [0.8, 0.8, 0.5]
model_pc_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
model_image_size = (128, 352)
model = dict(
    type='FullerNet',
    data_preprocessor=dict(type='MultiModalDataPreprocessor'),
    encoders=dict(
        camera=dict(
            type='CameraEncoder',
            backbone=dict(type='mmdet.ResNet', depth=18, base_channels=32, num_stages=4, out_indices=(1, 2, 3),
                          norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, style='pytorch'),
            neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256], out_channels=64, num_outs=3),
            vtransform=dict(type='LSSViewTransform', in_channels=64, out_channels=32, image_size=model_image_size,
                            feature_size=(model_image_size[0] // 8, model_image_size[1] // 8), xbound=(-51.2, 51.2, 0.8),
                            ybound=(-51.2, 51.2, 0.8), zbound=(-10.0, 10.0, 20.0), dbound=(1.0, 49.0, 1.0),
                            downsample=2)),
        lidar=dict(
            type='LidarEncoder',
            voxelize=dict(voxel_size=voxel_size, point_cloud_range=model_pc_range, max_num_points=10,
                          max_voxels=(30000, 30000)),
            voxel_encoder=dict(type='mmdet3d.HardSimpleVFE', num_features=5),
            backbone=dict(type='SparseBEVEncoder', in_channels=5, sparse_shape=(16, 128, 128), base_channels=16,
                          stages=2, out_channels=32))),
    fuser=dict(type='ConvFuser', in_channels=[32, 96], out_channels=64),
    decoder=dict(
        backbone=dict(type='mmdet3d.SECOND', in_channels=64, out_channels=[64, 128], layer_nums=[2, 2],
                      layer_strides=[1, 2], norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
                      conv_cfg=dict(type='Conv2d', bias=False)),
        neck=dict(type='mmdet3d.SECONDFPN', in_channels=[64, 128], out_channels=[64, 64], upsample_strides=[1, 2],
                  norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), upsample_cfg=dict(type='deconv', bias=False),
                  use_conv_for_no_stride=True)),
    heads=dict(
        det=dict(
            type='CenterPointDetHead',
            in_channels=128,
            tasks=[dict(num_class=10, class_names=['car', 'truck', 'trailer', 'bus', 'construction_vehicle',
                                                   'bicycle', 'motorcycle', 'pedestrian', 'traffic_cone',
                                                   'barrier'])],
            common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
            share_conv_channel=64,
            bbox_coder=dict(type='mmdet3d.CenterPointBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                            max_num=200, score_threshold=0.05, out_size_factor=2, voxel_size=voxel_size[:2],
                            pc_range=model_pc_range[:2], code_size=9),
            separate_head=dict(type='mmdet3d.SeparateHead', init_bias=-2.19, final_kernel=3),
            loss_cls=dict(type='mmdet.GaussianFocalLoss', reduction='mean'),
            loss_bbox=dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25),
            norm_bbox=True,
            train_cfg=dict(grid_size=[128, 128, 16], voxel_size=voxel_size, out_size_factor=2, dense_reg=1,
                           gaussian_overlap=0.1, max_objs=200, min_radius=2,
                           code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2],
                           point_cloud_range=model_pc_range),
            test_cfg=dict(post_center_limit_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0], max_per_img=200,
                          max_pool_nms=False, min_radius=[4, 12, 10, 1, 0.85, 0.175], score_threshold=0.05,
                          out_size_factor=2, voxel_size=voxel_size[:2], nms_type='circle', pre_max_size=1000,
                          post_max_size=83, nms_thr=0.2, pc_range=model_pc_range[:2])),
        map=dict(type='BEVSegmentationHead', in_channels=128,
                 grid_transform=dict(input_scope=[(-51.2, 51.2, 1.6), (-51.2, 51.2, 1.6)],
                                     output_scope=[(-50.0, 50.0, 1.0), (-50.0, 50.0, 1.0)]),
                 classes=['drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider'])),
)
# Under a launcher the model is wrapped by FullerDistributedDataParallel, which keeps the
# calibrated step (mmengine's default wrapper would bypass it). The view transform reads only
# the first FPN level, so the other levels' output convs get no gradient: DDP must look for
# unused parameters. (sync_bn = 'torch' at top level converts BN to SyncBN on CUDA.)
model_wrapper_cfg = dict(type='FullerDistributedDataParallel', find_unused_parameters=True)
