# FULLER: multi-level gradient calibration (inter-task + intra-modality).
_base_ = ['./naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py']
optim_wrapper = dict(type='CalibratedOptimWrapper', inter=dict(type='FullerInter', normalize='mean'),
                     intra=dict(type='ModalityCalibrator', target='mean'))
