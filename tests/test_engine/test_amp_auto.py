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
