# Non-finite steps are skipped and counted (GuardedOptimWrapper); 900 iterations (about 11 minutes
# on the 2-core AVX-512 EPYC of the README) with a linear warm-up and cosine decay. Evaluation is
# tools/test.py's job (run_demo.sh, ablate.py), so training does not validate: mmengine's loop
# validates every val_interval iterations *and* at the last one once past val_begin, so val_begin
# lies beyond any run (to validate during training, set train_cfg.val_begin and val_interval).
# fp32 (amp=None). tools/train.py --amp auto (or amp='auto' here) trains under bf16 where the CPU
# (AVX-512 BF16, AMX) or GPU has native bf16 units: 1.8x faster on a 2-core Xeon with AMX, but on
# the demo it cost detection accuracy (2 seeds: mAP 0.397/0.408, NDS 0.337/0.349 against fp32's
# 0.448/0.444 and 0.371/0.371; mIoU unchanged), below the main job's NDS target, so the main job
# stays in fp32 (docs/benchmarks/main_job_cpu.md). fused=True: PyTorch's one-kernel AdamW (the
# same update; 5% of the demo step on that Xeon).
optim_wrapper = dict(type='GuardedOptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01, fused=True),
                     clip_grad=dict(max_norm=35, norm_type=2), amp=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=870, eta_min=1e-5, by_epoch=False, begin=30, end=900),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=900, val_begin=10**9, val_interval=10**9)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
