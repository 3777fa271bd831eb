# The naive demo configuration with BEVFusion's TransFusion detection head in place of
# CenterPoint (heads.det): 200 heatmap-peak queries, one decoder layer, Hungarian assignment,
# decoding without NMS. The head's arguments not stated here are BEVFusion's
# (configs/_base_/models/transfusion_det_head.py states them all for the nuScenes configs).
_base_ = ['./naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py']
model = dict(
    heads=dict(
        det=dict(_delete_=True, type='TransFusionHead',
                 bbox_coder=dict(type='TransFusionBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                                 score_threshold=0.0, code_size=10),
                 train_cfg=dict(dataset='nuScenes', assigner=dict(type='HungarianAssigner3D')),
                 test_cfg=dict(dataset='nuScenes', nms_type=None))))
