# BEVFusion-MIT's map recipe: ./bevfusion-map_lc_swint_8x4-20e_nuscenes.py trained 20 epochs with
# Swin-T from BEVFusion's nuImages-pretrained weights (seg/fusion-bev256d2-lss.yaml:
# encoders.camera.backbone.init_cfg Pretrained pretrained/swint-nuimages-pretrained.pth), the rest new.
# docs/nuscenes.md.
_base_ = ['./bevfusion-map_lc_swint_8x4-20e_nuscenes.py']
model = dict(encoders=dict(camera=dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='pretrained/swint-nuimages-pretrained.pth')))))
