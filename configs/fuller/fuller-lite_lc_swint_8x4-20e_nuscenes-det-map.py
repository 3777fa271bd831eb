# FULLER with the lightweight heads: one detection task group with narrow convs, and the
# depthwise-separable map head (parameters: docs/benchmarks/params.md).
_base_ = ['./fuller_lc_swint_8x4-20e_nuscenes-det-map.py']
model = dict(heads=dict(
    det=dict(tasks=[dict(num_class=10, class_names={{_base_.class_names}})], share_conv_channel=32,
             separate_head=dict(head_conv=32), test_cfg=dict(min_radius=[1.0])),
    map=dict(lightweight=True)))
