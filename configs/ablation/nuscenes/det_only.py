# Single-task detection: the map head removed; detection metric only.
_base_ = ['./_base_ablation.py']
model = dict(heads=dict(map=None))
val_evaluator = [dict(type='NuScenesDetMetric', data_root={{_base_.data_root}}, version='v1.0-trainval',
                      classes={{_base_.class_names}})]
test_evaluator = val_evaluator
