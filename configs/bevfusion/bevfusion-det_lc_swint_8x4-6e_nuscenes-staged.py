# Stage 2 of BEVFusion-MIT's detection recipe: the camera+LiDAR detector of
# ./bevfusion-det_lc_swint_8x4-6e_nuscenes.py fine-tuned for 6 epochs from the stage-1 LiDAR-only
# detector (./bevfusion-det_l_voxel0075_8x4-20e_nuscenes.py: its LiDAR branch, decoder and head; the
# camera branch and the fuser start new, so the load is partial) with Swin-T from BEVFusion's
# nuImages-pretrained weights (camera+lidar/swint_v0p075/default.yaml: encoders.camera.backbone.init_cfg
# Pretrained pretrained/swint-nuimages-pretrained.pth; BEVFusion's tools/download_pretrained.sh gets
# it). No GT-paste (default.yaml: gt_paste_stop_epoch -1). docs/nuscenes.md.
_base_ = ['./bevfusion-det_lc_swint_8x4-6e_nuscenes.py']
model = dict(encoders=dict(camera=dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='pretrained/swint-nuimages-pretrained.pth')))))
load_from = 'work_dirs/bevfusion-det_l_voxel0075_8x4-20e_nuscenes/epoch_20.pth'
load_partial = True
