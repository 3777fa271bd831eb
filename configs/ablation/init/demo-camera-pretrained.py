# The demo model's camera backbone and neck started from the demo's image pretraining instead of
# from scratch, as BEVFusion's camera branch starts from ImageNet / nuImages weights. Make the
# file first (once; about 4 minutes on 2 cores):
#   python tools/pretrain_demo_camera.py
# (a segmentation of labelled demo images of other maps than the dataset's: fuller/demo/pretrain.py).
# Merge it over any demo run: tools/ablate.py --with ... configs/ablation/init/demo-camera-pretrained.py,
# or `_base_` it in a fork of a demo config. Measured in docs/results/demo_world.md.
model = dict(encoders=dict(camera=dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/demo-camera_r18-tiny_seg.pth',
                                prefix='backbone.')),
    neck=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/demo-camera_r18-tiny_seg.pth',
                            prefix='neck.')))))
