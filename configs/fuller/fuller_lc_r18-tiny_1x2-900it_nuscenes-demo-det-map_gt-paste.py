# The main job with GT-paste (BEVFusion's sample groups and filters, configs/nuscenes/default.yaml
# db_sampler), pasting in passes 0-6 of the 9.4 passes over the demo's train split (BEVFusion: epochs
# 0-14 of 20). Opt-in: BEVFusion pastes only in its LiDAR-only stage, pasted objects are not in the
# camera images, and the demo's fused model already leans on LiDAR (docs/results/demo_gt_paste.md:
# measured 2 seeds each way, within about 1 point of the main job on every metric).
_base_ = ['./fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py']
_groups = dict(car=2, truck=3, construction_vehicle=7, bus=4, trailer=6, barrier=2, motorcycle=6, bicycle=6,
               pedestrian=2, traffic_cone=2)
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadMultiSweepPoints', sweeps=4, cache_mb=512),
    dict(type='LoadMultiViewImages', cache_mb=512),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectPaste', stop_epoch=7, db_sampler=dict(
        info_path='nuscenes_dbinfos_train.pkl', rate=1.0,
        prepare=dict(filter_by_difficulty=[-1], filter_by_min_points={k: 5 for k in _groups}),
        sample_groups=_groups, points_loader=dict(load_dim=5, use_dim=5))),
    dict(type='ImageAug3D', resize_lim=(0.73, 0.87), bot_pct_lim=(0.0, 0.1), rand_flip=True, is_train=True),
    dict(type='BEVAugmentation', rot_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), is_train=True),
    dict(type='LoadBEVMapMask', line_width=1.0),
    dict(type='ObjectRangeFilter'),
    dict(type='ObjectNameFilter'),
    dict(type='PointsRangeFilter'),
    dict(type='PackMultiTaskInputs'),
]))
