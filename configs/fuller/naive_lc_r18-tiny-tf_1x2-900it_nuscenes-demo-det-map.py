# The naive demo configuration with BEVFusion's TransFusion detection head in place of
# CenterPoint (heads.det): 200 heatmap-peak queries, one decoder layer, Hungarian assignment,
# decoding without NMS. The head's arguments not stated here are BEVFusion's
# (configs/_base_/models/transfusion_det_head.py states them all for the nuScenes configs).
# The learning rate is a quarter of the CenterPoint demo's: at its 2e-3 the detection-only model
# stalled (heatmap loss ~1.1 after 100 iterations, matched IoU ~0.1, 11.6 mAP at 900 iterations);
# at 5e-4 it learns (41.3 mAP; docs/results/transfusion_demo.md).
_base_ = ['./naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py']
optim_wrapper = dict(optimizer=dict(lr=5e-4))
model = dict(
    heads=dict(
        det=dict(_delete_=True, type='TransFusionHead',
                 bbox_coder=dict(type='TransFusionBBoxCoder', post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                                 score_threshold=0.0, code_size=10),
                 train_cfg=dict(dataset='nuScenes', assigner=dict(type='HungarianAssigner3D')),
                 test_cfg=dict(dataset='nuScenes', nms_type=None))))
