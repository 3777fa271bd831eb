# Variant: FULLER with the CenterPoint head, made lightweight: one detection task group of all
# classes (tasks=None) with narrow convs, and the depthwise-separable map head (parameters:
# docs/benchmarks/params.md).
_base_ = ['./fuller_lc_swint-centerpoint_8x4-20e_nuscenes-det-map.py']
model = dict(heads=dict(
    det=dict(tasks=None, share_conv_channel=32,
             separate_head=dict(head_conv=32), test_cfg=dict(min_radius=[1.0])),
    map=dict(lightweight=True)))
