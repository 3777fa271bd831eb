# Variant: FULLER on nuScenes with the CenterPoint detection head (inter- and intra-gradient calibration).
_base_ = ['./naive_lc_swint-centerpoint_8x4-20e_nuscenes-det-map.py']
optim_wrapper = dict(type='CalibratedOptimWrapper', inter=dict(type='FullerInter', normalize='mean'),
                     intra=dict(type='ModalityCalibrator', target='mean'))
