"""``--amp auto``: bf16 only where the hardware has native bf16 units (issue 28, item 1)."""

import os.path as osp
import subprocess
import sys

from fuller.testing import REPO_ROOT
from fuller.utils import auto_precision, cpu_flags


def test_auto_precision_follows_the_hardware():
    # AVX2-only EPYC: bf16 autocast was 6.7x slower than fp32 -> fp32.
    dtype, why = auto_precision(flags={'avx2', 'fma', 'avx512f'})
    assert dtype is None and 'no native bf16 units' in why
    # Xeon with AVX-512 BF16 and AMX: 1.5x faster -> bf16.
    dtype, why = auto_precision(flags={'avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'})
    assert dtype == 'bfloat16' and 'amx_bf16, avx512_bf16' in why
    assert auto_precision(flags={'avx512_bf16'})[0] == 'bfloat16'
    assert auto_precision(cuda_bf16=True) == ('bfloat16', 'the CUDA device supports bf16')
    assert auto_precision(cuda_bf16=False)[0] is None
    # This machine: the same answer as its flags give.
    native = bool({'avx512_bf16', 'amx_bf16'} & cpu_flags())
    import torch
    if not torch.cuda.is_available():
        assert (auto_precision()[0] == 'bfloat16') == native


def test_amp_auto_refuses_a_forced_dtype(tmp_path):
    train = osp.join(REPO_ROOT, 'tools', 'train.py')
    cfg = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
    proc = subprocess.run([sys.executable, train, cfg, '--amp', 'auto', '--amp-dtype', 'bfloat16',
                           '--work-dir', str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode != 0 and '--amp auto chooses the precision itself' in proc.stderr


def test_amp_auto_in_the_wrapper_and_the_demo_config():
    """``optim_wrapper.amp='auto'`` is decided by the wrapper, from this machine, and logged; the
    demo schedule uses it (bf16 on CPUs with bf16 units: measured to hold the main job's metrics,
    see the schedule) and the study pins fp32 (its runs accumulate over machines)."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    from fuller.engine import GuardedOptimWrapper

    logger = MMLogger.get_instance('test_amp_auto')
    lines = []
    handler = __import__('logging').Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    try:
        ow = GuardedOptimWrapper(optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1), amp='auto',
                                 device_type='cpu')
    finally:
        logger.removeHandler(handler)
    want, why = auto_precision(device_type='cpu')
    assert ow.amp == want and ow.cast_dtype == (torch.bfloat16 if want else None)
    assert any("optim_wrapper.amp='auto'" in x and why in x for x in lines), lines
    demo = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'fuller',
                                    'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'))
    assert demo.optim_wrapper.amp == 'auto'
    from fuller.engine import apply_variant
    study = apply_variant(osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'),
                          osp.join(REPO_ROOT, 'configs', 'ablation', 'fuller.py'))
    assert study.optim_wrapper.amp is None


def test_auto_num_workers():
    """``num_workers='auto'``: none on 2 CPUs (measured faster there), half the CPUs up to 4."""
    from mmengine.config import Config

    from fuller.engine import resolve_config
    from fuller.engine.config import auto_num_workers

    assert [auto_num_workers(c) for c in (1, 2, 3, 4, 8, 16)] == [0, 0, 1, 2, 4, 4]
    cfg = Config(dict(train_dataloader=dict(num_workers='auto', persistent_workers=True),
                      val_dataloader=dict(num_workers=3, persistent_workers=True)))
    resolve_config(cfg)
    assert cfg.train_dataloader.num_workers == auto_num_workers()
    assert cfg.train_dataloader.persistent_workers == (auto_num_workers() > 0)
    assert cfg.val_dataloader.num_workers == 3
