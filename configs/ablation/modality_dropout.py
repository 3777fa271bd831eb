# Modality dropout over naive training: in each training sample the camera BEV map is zeroed
# with probability 0.25 and, exclusively, the LiDAR BEV map with probability 0.25 (half the
# samples train one branch alone; fuller/models/detectors/fuller_net.py, `modality_dropout`).
# The usual simple remedy for a fused model that leans on one sensor: the baseline the intra
# (modality) calibration is compared with. Summed task losses, no calibration.
_base_ = ['./_study.py']
model = dict(modality_dropout=0.25)
