# A variant of BEVFusion's nuScenes network (./fuller_lc_swint_nuscenes.py): the CenterPoint
# detection head in place of TransFusion, everything else BEVFusion's. The head is mmdet3d's nuScenes
# CenterPoint as ./centerpoint_det_head.py states it (restated here because mmengine merges a
# config's bases key by key and both heads live under model.heads.det; a test checks that the two
# are equal), with mmdet3d's nuScenes grouping of the classes into task heads.
_base_ = ['./fuller_lc_swint_nuscenes.py']
model = dict(
    heads=dict(
        det=dict(
            _delete_=True,
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
                          nms_type='circle', pre_max_size=1000, post_max_size=83, nms_thr=0.2),
            tasks=[dict(class_names=['car']), dict(class_names=['truck', 'construction_vehicle']),
                   dict(class_names=['bus', 'trailer']), dict(class_names=['barrier']),
                   dict(class_names=['motorcycle', 'bicycle']), dict(class_names=['pedestrian', 'traffic_cone'])])))
