import pytest
import torch

from fuller.models.camera import bev_pool, bev_pool_scatter


@pytest.mark.parametrize('impl', ['indexed', 'sorted', 'auto'])
def test_bev_pool_matches_scatter_reference_values_and_grads(impl):
    gen = torch.Generator().manual_seed(0)
    b, nx, ny, nz, c, p = 2, 12, 10, 2, 7, 5000
    feats = torch.randn(p, c, generator=gen, dtype=torch.float64, requires_grad=True)
    coords = torch.stack([torch.randint(-2, nx + 2, (p,), generator=gen), torch.randint(-2, ny + 2, (p,), generator=gen),
                          torch.randint(0, nz, (p,), generator=gen), torch.randint(0, b, (p,), generator=gen)], 1)
    out = bev_pool(feats, coords, b, nx, ny, nz, impl=impl)
    ref = bev_pool_scatter(feats, coords, b, nx, ny, nz)
    assert out.shape == (b, c * nz, ny, nx)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(out)
    (g1,) = torch.autograd.grad((out * w).sum(), feats)
    (g2,) = torch.autograd.grad((ref * w).sum(), feats)
    torch.testing.assert_close(g1, g2)
    # Points outside the grid get no gradient.
    outside = (coords[:, 0] < 0) | (coords[:, 0] >= nx) | (coords[:, 1] < 0) | (coords[:, 1] >= ny)
    assert outside.any() and (g1[outside] == 0).all()


@pytest.mark.parametrize('impl', ['indexed', 'sorted', 'scatter'])
def test_bev_pool_against_python_loop(impl):
    feats = torch.arange(12, dtype=torch.float64).view(6, 2)
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 2, 0, 0], [3, 1, 0, 1], [3, 1, 0, 1], [9, 9, 0, 0]])
    out = bev_pool(feats, coords, 2, 4, 3, 1, impl=impl)
    expect = torch.zeros(2, 2, 3, 4, dtype=torch.float64)
    for f, (x, y, z, bi) in zip(feats, coords.tolist()):
        if x < 4 and y < 3:
            expect[bi, :, y, x] += f
    torch.testing.assert_close(out, expect)


def test_bev_pool_rejects_an_unknown_impl_and_handles_no_point_inside():
    with pytest.raises(ValueError, match='impl'):
        bev_pool(torch.zeros(1, 2), torch.zeros(1, 4, dtype=torch.long), 1, 2, 2, 1, impl='cuda-kernel')
    for impl in ('indexed', 'sorted', 'scatter'):
        out = bev_pool(torch.ones(3, 2), torch.full((3, 4), -1, dtype=torch.long), 1, 2, 2, 1, impl=impl)
        assert out.shape == (1, 2, 2, 2) and not out.any()
