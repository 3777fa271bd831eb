# BEVFusion-MIT's camera+LiDAR detection network for nuScenes, module for module
# (configs/nuscenes/det/transfusion/secfpn/camera+lidar/swint_v0p075/convfuser.yaml and the files it
# extends): Swin-T, GeneralizedLSSFPN, DepthLSS (the LiDAR depth image enters the depth net; 118
# depth bins, 3-conv downsample), the residual SparseEncoder (ResidualSparseEncoder: 21 sparse
# convs), ConvFuser, SECOND + SECONDFPN and the TransFusion detection head
# (./transfusion_det_head.py); the map head is BEVFusion's BEVSegmentationHead. The values are
# checked against BEVFusion's yaml key by key in tests/test_configs/test_bevfusion_configs.py.
# Grids, class lists and input channels come from the config's `geometry` and the dataset's
# metainfo (fuller/models/derive.py). Swin-T ImageNet weights: set
# model.encoders.camera.backbone.init_cfg to dict(type='Pretrained', checkpoint=<local .pth>)
# (README, 'Pretrained weights'); BEVFusion's trained weights: tools/misc/convert_bevfusion.py.
# The CenterPoint-head variant: ./fuller_lc_swint-centerpoint_nuscenes.py.
_base_ = ['./transfusion_det_head.py']
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
            vtransform=dict(type='DepthLSSViewTransform', in_channels=256, out_channels=80, zbound=(-10.0, 10.0, 20.0),
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
    heads=dict(map=dict(type='BEVSegmentationHead')),
)
# Under a launcher: keeps the calibrated step; unused FPN levels need unused-parameter search.
model_wrapper_cfg = dict(type='FullerDistributedDataParallel', find_unused_parameters=True)
