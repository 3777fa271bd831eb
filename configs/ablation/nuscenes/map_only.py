# Single-task map segmentation: the detection head removed; map metric only.
_base_ = ['./_base_ablation.py']
model = dict(heads=dict(det=None))
val_evaluator = [dict(type='BEVMapIoUMetric', classes={{_base_.map_classes}})]
test_evaluator = val_evaluator
