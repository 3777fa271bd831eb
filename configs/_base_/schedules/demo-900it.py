# Non-finite steps are skipped and counted (GuardedOptimWrapper); 900 iterations (on 2 cores: 13 min
# in fp32 on an AVX2-only EPYC, 3.5 min in bf16 on an AVX-512 BF16 one) with a linear warm-up and
# cosine decay. Evaluation is
# tools/test.py's job (run_demo.sh, ablate.py), so training does not validate: mmengine's loop
# validates every val_interval iterations *and* at the last one once past val_begin, so val_begin
# lies beyond any run (to validate during training, set train_cfg.val_begin and val_interval).
# amp='auto': bf16 where the CPU (AVX-512 BF16, AMX) or GPU has native bf16 units, fp32 elsewhere
# (logged; --amp off forces fp32). On a 2-core AMD EPYC with AVX-512 BF16, 4 seeds each way: bf16
# 0.230-0.259 s/it against fp32's 0.333-0.370, with mAP / NDS / mIoU within the seed spread of fp32's
# (docs/results/main_job.md, "Precision"); bf16 had cost detection while the view transform's
# lift and pooling and the head's losses ran in bf16 (BEVFusion keeps both in fp32). fused=True:
# PyTorch's one-kernel AdamW (the same update; 5% of the demo step on a Xeon with AMX).
optim_wrapper = dict(type='GuardedOptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01, fused=True),
                     clip_grad=dict(max_norm=35, norm_type=2), amp='auto')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=870, eta_min=1e-5, by_epoch=False, begin=30, end=900),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=900, val_begin=10**9, val_interval=10**9)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
