# BEVFusion's TransFusion detection head (heads.det), as BEVFusion-MIT sets it for nuScenes:
# configs/nuscenes/det/transfusion/default.yaml (model.heads.object). The grid settings
# (grid_size, voxel_size, point_cloud_range / pc_range, out_size_factor) and num_classes come from
# the config's `geometry` and the dataset's metainfo (fuller/models/derive.py); BEVFusion's yaml
# states them as grid_size [1024, 1024, 1] (0.1 m voxels; [1440, 1440, 41] in its 0.075 m config),
# out_size_factor 8 and num_classes 10. Not carried over: `in_channels: null` (filled from the
# decoder here too) and dequity_eta/gamma. FULLER's one addition is heatmap_init_bias (the
# CenterNet prior on the heatmaps' last convs; None keeps BEVFusion-MIT's PyTorch default).
model = dict(
    heads=dict(
        det=dict(
            type='TransFusionHead',
            num_proposals=200,
            auxiliary=True,
            hidden_channel=128,
            num_decoder_layers=1,
            num_heads=8,
            nms_kernel_size=3,
            ffn_channel=256,
            dropout=0.1,
            bn_momentum=0.1,
            activation='relu',
            common_heads=dict(center=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
            bbox_coder=dict(type='TransFusionBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                            score_threshold=0.0, code_size=10),
            loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, reduction='mean',
                          loss_weight=1.0),
            loss_heatmap=dict(type='mmdet.GaussianFocalLoss', reduction='mean', loss_weight=1.0),
            loss_bbox=dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25),
            train_cfg=dict(
                dataset='nuScenes', gaussian_overlap=0.1, min_radius=2, pos_weight=-1,
                code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2],
                assigner=dict(
                    type='HungarianAssigner3D',
                    iou_calculator=dict(type='mmdet3d.BboxOverlaps3D', coordinate='lidar'),
                    cls_cost=dict(type='mmdet.FocalLossCost', gamma=2.0, alpha=0.25, weight=0.15),
                    reg_cost=dict(type='BBoxBEVL1Cost', weight=0.25),
                    iou_cost=dict(type='IoU3DCost', weight=0.25))),
            test_cfg=dict(dataset='nuScenes', nms_type=None))))
