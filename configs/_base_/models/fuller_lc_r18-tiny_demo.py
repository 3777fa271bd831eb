# A small camera+LiDAR multi-task model that trains on a CPU. Grids (voxels, BEV, image and
# map sizes), class lists and input channels are not stated here: the model derives them from
# the config's `geometry` and the dataset's metainfo (fuller/models/derive.py), so a
# single-modality variant is `model = dict(encoders=dict(lidar=None))` and nothing else.
_base_ = ['./centerpoint_det_head.py']
model = dict(
    type='FullerNet',
    # 2-D convolutions in NHWC when training under bf16 (13% faster there; in fp32 it would cost
    # BatchNorm precision): decided from optim_wrapper.amp by fuller.engine.resolve_config
    channels_last='bf16',
    data_preprocessor=dict(type='MultiModalDataPreprocessor'),
    encoders=dict(
        camera=dict(
            type='CameraEncoder',
            backbone=dict(type='mmdet.ResNet', depth=18, base_channels=32, num_stages=4, out_indices=(1, 2, 3),
                          norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, style='pytorch'),
            neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256], out_channels=64, num_outs=3),
            vtransform=dict(type='LSSViewTransform', in_channels=64, out_channels=32, zbound=(-10.0, 10.0, 20.0),
                            dbound=(1.0, 49.0, 1.0), downsample=2)),
        lidar=dict(
            type='LidarEncoder',
            voxelize=dict(max_num_points=10, max_voxels=(30000, 30000)),
            voxel_encoder=dict(type='mmdet3d.HardSimpleVFE', num_features=5),
            backbone=dict(type='SparseBEVEncoder', in_channels=5, base_channels=16, out_channels=32))),
    fuser=dict(type='ConvFuser', out_channels=64),
    decoder=dict(
        backbone=dict(type='mmdet3d.SECOND', out_channels=[64, 128], layer_nums=[2, 2], layer_strides=[1, 2],
                      norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), conv_cfg=dict(type='Conv2d', bias=False)),
        neck=dict(type='mmdet3d.SECONDFPN', out_channels=[64, 64], upsample_strides=[1, 2],
                  norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), upsample_cfg=dict(type='deconv', bias=False),
                  use_conv_for_no_stride=True)),
    heads=dict(
        # CenterPoint (./centerpoint_det_head.py) keeping at most 200 boxes, scored from 0.05.
        det=dict(bbox_coder=dict(max_num=200, score_threshold=0.05), train_cfg=dict(max_objs=200),
                 test_cfg=dict(max_per_img=200, score_threshold=0.05)),
        # Narrower than BEVFusion's head (hidden width = input width, 128 here): its two 3x3 convs
        # run on the 100 x 100 map grid and were a quarter of the CPU step at full width.
        map=dict(type='BEVSegmentationHead', channels=64)),
)
# Under a launcher the model is wrapped by FullerDistributedDataParallel, which keeps the
# calibrated step (mmengine's default wrapper would bypass it). The view transform reads only
# the first FPN level, so the other levels' output convs get no gradient: DDP must look for
# unused parameters. (sync_bn = 'torch' at top level converts BN to SyncBN on CUDA.)
model_wrapper_cfg = dict(type='FullerDistributedDataParallel', find_unused_parameters=True)
