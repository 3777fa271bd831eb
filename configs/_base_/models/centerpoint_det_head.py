# FULLER's CenterPoint detection head (heads.det), as mmdet3d's nuScenes CenterPoint sets it:
# configs/_base_/models/centerpoint_01voxel_second_secfpn_nus.py (pts_bbox_head, train_cfg.pts,
# test_cfg.pts) with the circle NMS of its *circlenms* variants. The grid settings (out_size_factor,
# voxel_size, pc_range, grid_size) and the class grouping default come from the config's
# `geometry` and the dataset's metainfo (fuller/models/derive.py); a model config that uses this
# head sets only what differs (the demo's `max_num` ...). post_center_range is mmdet3d's for
# nuScenes' 54 m (0.075 m voxels) and 51.2 m (0.1 m voxels) point-cloud ranges alike.
model = dict(
    heads=dict(
        det=dict(
            type='CenterPointDetHead',
            common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
            share_conv_channel=64,
            bbox_coder=dict(type='mmdet3d.CenterPointBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                            max_num=500, score_threshold=0.1, code_size=9),
            separate_head=dict(type='mmdet3d.SeparateHead', init_bias=-2.19, final_kernel=3),
            loss_cls=dict(type='mmdet.GaussianFocalLoss', reduction='mean'),
            loss_bbox=dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25),
            norm_bbox=True,
            train_cfg=dict(dense_reg=1, gaussian_overlap=0.1, max_objs=500, min_radius=2,
                           code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2]),
            test_cfg=dict(post_center_limit_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0], max_per_img=500,
                          max_pool_nms=False, min_radius=[4, 12, 10, 1, 0.85, 0.175], score_threshold=0.1,
                          nms_type='circle', pre_max_size=1000, post_max_size=83, nms_thr=0.2))))
