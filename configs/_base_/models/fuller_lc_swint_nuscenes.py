# BEVFusion's camera+LiDAR network for nuScenes, module for module where FULLER has BEVFusion's:
# Swin-T, GeneralizedLSSFPN, the LSS view transform with its 3-conv downsample (118 depth bins;
# BEVFusion's map model's; its detection model lifts with DepthLSS, which FULLER does not have
# yet), the residual SparseEncoder (ResidualSparseEncoder: mmdet3d's, 21 sparse convs), ConvFuser,
# SECOND + SECONDFPN (tests/test_models/test_bevfusion_modules.py). Not BEVFusion's: the
# detection head is CenterPoint (6 task groups; BEVFusion's is TransFusion). Grids, class lists and
# input channels come from the config's `geometry` and the dataset's metainfo
# (fuller/models/derive.py). Swin-T ImageNet weights: set
# model.encoders.camera.backbone.init_cfg to dict(type='Pretrained', checkpoint=<local .pth>)
# (README, 'Pretrained weights').
_base_ = ['./centerpoint_det_head.py']
model = dict(
    type='FullerNet',
    data_preprocessor=dict(type='MultiModalDataPreprocessor'),
    encoders=dict(
        camera=dict(
            type='CameraEncoder',
            backbone=dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                          window_size=7, mlp_ratio=4, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                          attn_drop_rate=0.0, drop_path_rate=0.2, patch_norm=True, out_indices=[1, 2, 3],
                          with_cp=False, convert_weights=True, init_cfg=None),
            neck=dict(type='GeneralizedLSSFPN', in_channels=[192, 384, 768], out_channels=256, start_level=0,
                      num_outs=3, norm_cfg=dict(type='BN2d', requires_grad=True),
                      act_cfg=dict(type='ReLU', inplace=True),
                      upsample_cfg=dict(mode='bilinear', align_corners=False)),
            vtransform=dict(type='LSSViewTransform', in_channels=256, out_channels=80, zbound=(-10.0, 10.0, 20.0),
                            dbound=(1.0, 60.0, 0.5), downsample=2,
                            # BEVFusion's vtransforms/base.py bev_pool: ((geom - (bx - dx / 2)) / dx).long()
                            cell_index='trunc')),
        lidar=dict(
            type='LidarEncoder',
            voxelize=dict(max_num_points=10, max_voxels=(120000, 160000)),
            voxel_encoder=dict(type='mmdet3d.HardSimpleVFE', num_features=5),
            # BEVFusion's SparseEncoder in mmdet3d's (z, y, x) order: its stage-3 padding [1, 1, 0]
            # (x, y, z) is [0, 1, 1] here; sparse_shape (41, 1440, 1440) comes from the geometry.
            backbone=dict(type='ResidualSparseEncoder', in_channels=5, output_channels=128,
                          order=('conv', 'norm', 'act'),
                          encoder_channels=[[16, 16, 32], [32, 32, 64], [64, 64, 128], [128, 128]],
                          encoder_paddings=[[0, 0, 1], [0, 0, 1], [0, 0, [0, 1, 1]], [0, 0]],
                          block_type='basicblock'))),
    fuser=dict(type='ConvFuser', out_channels=256),
    decoder=dict(
        backbone=dict(type='mmdet3d.SECOND', out_channels=[128, 256], layer_nums=[5, 5], layer_strides=[1, 2],
                      norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), conv_cfg=dict(type='Conv2d', bias=False)),
        neck=dict(type='mmdet3d.SECONDFPN', out_channels=[256, 256], upsample_strides=[1, 2],
                  norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), upsample_cfg=dict(type='deconv', bias=False),
                  use_conv_for_no_stride=True)),
    heads=dict(
        # CenterPoint (./centerpoint_det_head.py) with its nuScenes grouping of the classes into task heads.
        det=dict(tasks=[dict(class_names=['car']), dict(class_names=['truck', 'construction_vehicle']),
                        dict(class_names=['bus', 'trailer']), dict(class_names=['barrier']),
                        dict(class_names=['motorcycle', 'bicycle']),
                        dict(class_names=['pedestrian', 'traffic_cone'])]),
        map=dict(type='BEVSegmentationHead')),
)
# Under a launcher: keeps the calibrated step; unused FPN levels need unused-parameter search.
model_wrapper_cfg = dict(type='FullerDistributedDataParallel', find_unused_parameters=True)
