"""FLOPs per step and the device's peak behind the benchmark tables' utilisation columns."""

import pytest
import torch
from torch import nn

from fuller.analysis.flops import count_flops, cpu_flops_per_cycle, cpu_peak, utilisation


def test_dense_flops_forward_and_backward():
    lin = nn.Linear(16, 8)
    x = torch.randn(4, 16)
    with count_flops(lin) as c:
        lin(x).sum().backward()
    # forward 2 x 4 x 16 x 8; backward: input gradient (no: x needs none) + weight gradient
    assert c['dense'] == 2 * 4 * 16 * 8 * 2 and c['sparse'] == 0 and c['total'] == c['dense']
    conv = nn.Conv2d(3, 5, 3, padding=1)
    with count_flops(conv, backward=False) as c:
        with torch.no_grad():
            conv(torch.randn(2, 3, 10, 10))
    assert c['dense'] == 2 * (2 * 10 * 10) * 5 * (3 * 9)


def test_counting_survives_autograd_grad_on_a_leaf():
    """The calibrated step takes task gradients with torch.autograd.grad at a leaf (the shared
    feature); torch's FlopCounterMode refuses that with its module tracking, ours counts."""
    lin = nn.Linear(6, 6)
    with count_flops(lin) as c:
        leaf = lin(torch.randn(3, 6)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad((leaf ** 2).sum(), leaf)
        lin(torch.randn(3, 6)).sum().backward()
    # two forwards and the second one's weight gradient (its input needs none)
    assert c['dense'] == 2 * 3 * 6 * 6 * 3


def test_sparse_convolutions_counted_from_active_sites():
    spconv = pytest.importorskip('spconv.pytorch')
    conv = spconv.SubMConv3d(4, 8, 3, indice_key='k', algo=spconv.ConvAlgo.Native)  # the CPU algorithm
    idx = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2], [0, 3, 3, 3]], dtype=torch.int32)
    x = spconv.SparseConvTensor(torch.randn(3, 4, requires_grad=True), idx, [5, 5, 5], 1)
    with count_flops(conv) as c:
        conv(x).features.sum().backward()
    assert c['sparse'] == 3 * (2 * 3 * 27 * 4 * 8)


def test_sparse_matrix_products_counted_from_stored_entries():
    """A CSR operand (the view transform's pooling matrix) costs 2 x nnz x the other side, not its
    dense shape: torch's counter alone counts this 1000 x 4000 matrix with 300 entries as dense."""
    gen = torch.Generator().manual_seed(0)
    rows, cols = torch.randint(0, 1000, (300,), generator=gen), torch.randint(0, 4000, (300,), generator=gen)
    idx = torch.unique(rows * 4000 + cols)
    nnz = idx.numel()
    a = torch.sparse_coo_tensor(torch.stack([idx // 4000, idx % 4000]), torch.ones(nnz), (1000, 4000)).to_sparse_csr()
    b = torch.randn(4000, 32)
    with count_flops() as c:
        a @ b
    assert c['dense'] == 2 * nnz * 32
    d = torch.randn(8, 1000)
    with count_flops() as c:
        d @ a
    assert c['dense'] == 2 * nnz * 8
    with count_flops() as c:  # the pooling's depth gradient: one dot product of length 32 per entry
        torch.sparse.sampled_addmm(a, torch.randn(1000, 32), torch.randn(32, 4000), beta=0.0)
    assert c['dense'] == 2 * nnz * 32
    with count_flops() as c:  # dense products as before
        torch.randn(10, 20) @ torch.randn(20, 30)
    assert c['dense'] == 2 * 10 * 20 * 30


def test_cpu_peak_formula():
    # Intel Xeon with AVX-512 and AMX: 64 fp32 FLOPs/cycle/core, 1024 bf16 on the tiles
    assert cpu_flops_per_cycle({'avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_bf16'}, 'GenuineIntel', 6)[:2] == \
        (64, 1024)
    # AMD Zen 4 (family 0x19): AVX-512 on 256-bit datapaths, bf16 dot products at twice the rate
    assert cpu_flops_per_cycle({'avx2', 'fma', 'avx512f', 'avx512_bf16'}, 'AuthenticAMD', 0x19)[:2] == (32, 64)
    # an AVX2-only EPYC: 32, bf16 emulated at the fp32 rate
    assert cpu_flops_per_cycle({'avx2', 'fma'}, 'AuthenticAMD', 0x17)[:2] == (32, 32)
    peak = cpu_peak(threads=2)
    if peak['fp32'] is not None:
        assert peak['fp32'] > 0 and peak['bf16'] >= peak['fp32'] and '2 cores' in peak['how']


def test_utilisation_cells():
    gflop, rate, peak, pct = utilisation(2e9, 0.5, 100.0)
    assert (gflop, rate, peak, pct) == (2.0, 4.0, 100, '4.0')
    assert utilisation(None, 0.5, 100.0)[0] == 'n/a'
