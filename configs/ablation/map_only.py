# Single-task map segmentation: the detection head removed (the detection metric reports nothing).
_base_ = ['./_study.py']
model = dict(heads=dict(det=None))
