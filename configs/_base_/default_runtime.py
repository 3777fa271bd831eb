default_scope = 'fuller'
custom_imports = dict(imports=['fuller.datasets', 'fuller.models', 'fuller.engine', 'fuller.evaluation'],
                      allow_failed_imports=False)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic_local: checkpoints are written to a temp file and renamed, so a kill while saving
    # never leaves a broken file behind; background: training goes on while the file is written
    # (FullerCheckpointHook: mmengine's, moving the last_checkpoint pointer once the file is there).
    checkpoint=dict(type='FullerCheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=3, save_last=True,
                    backend_args=dict(backend='atomic_local', background=True)),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# Checkpoints are written as plain data so that every load can use torch's weights_only=True.
# PipelineEpochHook: epoch-dependent data steps (ObjectPaste's stop_epoch) learn the epoch.
custom_hooks = [dict(type='SafeCheckpointHook'), dict(type='ProgressBarHook'), dict(type='CurvesHook'),
                dict(type='PipelineEpochHook')]
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='mmdet3d.Det3DLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# load_from must fit the model exactly unless load_partial (tools: --load-partial); files load
# with torch's safe unpickler unless trust_checkpoint (tools: --trust-checkpoint).
load_partial = False
trust_checkpoint = False
randomness = dict(seed=0, deterministic=False)
