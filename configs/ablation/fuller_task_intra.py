# FULLER with per-task modality calibration: each task's camera/LiDAR gradients are balanced on
# their own before the tasks are added (a change of direction in each branch, not only of scale;
# docs/method.md, "Per-task modality calibration").
_base_ = ['./_study.py']
optim_wrapper = dict(inter=dict(type='FullerInter', normalize='mean'),
                     intra=dict(type='ModalityCalibrator', target='mean', per_task=True))
