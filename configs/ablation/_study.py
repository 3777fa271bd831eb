# What every ablation variant shares, applied over any base config by tools/ablate.py (no
# model, data or optimizer here, so the base's schedule reaches every variant): the calibrated
# wrapper in measure-only mode (inter 'Sum' adds the task gradients, intra target 'none' passes
# them unchanged) -- numerically the naive baseline, but every run logs the same diagnostics
# (task-gradient cosine and norms, camera/LiDAR gradient ratio) -- logged every iteration.
# A rule's arguments never carry over to another rule: the rule dicts replace the base's
# (_delete_ on them only; the base's optimizer and clipping stay). The study trains in fp32
# (amp=None) on every machine: its runs accumulate over sessions on CPUs with and without bf16
# units, and the demo schedule's amp='auto' would pair bf16 runs with fp32 ones.
optim_wrapper = dict(type='CalibratedOptimWrapper', inter=dict(_delete_=True, type='Sum'),
                     intra=dict(_delete_=True, type='ModalityCalibrator', target='none'), amp=None)
default_hooks = dict(logger=dict(interval=1))
log_processor = dict(window_size=1)
