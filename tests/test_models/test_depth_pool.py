"""Frustum-free depth-weighted BEV pooling equals the materialising Lift-Splat reference."""

import pytest
import torch

from fuller.models.camera import bev_pool_scatter
from fuller.models.camera.depth_pool import FrustumMapping, depth_weighted_pool


def _case(b=2, n=3, d=5, fh=4, fw=6, c=7, nx=9, ny=8, nz=2, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    depth = torch.rand(b * n, d, fh, fw, generator=gen, dtype=torch.float64).softmax(1).to(dtype)
    ctx = torch.randn(b * n, c, fh, fw, generator=gen, dtype=torch.float64).to(dtype)
    # Cell coordinates of every frustum point, some outside the grid; many points share a cell.
    shape = (b, n, d, fh, fw)
    coords = torch.stack([torch.randint(-2, nx + 2, shape, generator=gen), torch.randint(-2, ny + 2, shape, generator=gen),
                          torch.randint(-1, nz + 1, shape, generator=gen),
                          torch.arange(b).view(b, 1, 1, 1, 1).expand(shape)], -1)
    return depth, ctx, coords, (b, nx, ny, nz)


def _cells(coords, b, nx, ny, nz):
    x, y, z, bi = coords.unbind(-1)
    inside = (x >= 0) & (x < nx) & (y >= 0) & (y < ny) & (z >= 0) & (z < nz)
    flat = ((bi * nz + z) * ny + y) * nx + x
    return torch.where(inside, flat, -1)


def _reference(depth, ctx, coords, b, nx, ny, nz):
    """Today's path: materialise the lifted frustum, then pool it."""
    bn, c, fh, fw = ctx.shape
    d = depth.shape[1]
    vol = depth.unsqueeze(1) * ctx.unsqueeze(2)  # [BN, C, D, fH, fW]
    vol = vol.view(b, bn // b, c, d, fh, fw).permute(0, 1, 3, 4, 5, 2)
    return bev_pool_scatter(vol.reshape(-1, c), coords.reshape(-1, 4), b, nx, ny, nz)


def _ours(depth, ctx, coords, b, nx, ny, nz):
    bn, c, fh, fw = ctx.shape
    m = FrustumMapping.from_cells(_cells(coords, b, nx, ny, nz), b * nz * ny * nx, depth.shape[1], fh * fw)
    out = depth_weighted_pool(depth, ctx, m)
    return out.view(b, nz, ny, nx, c).permute(0, 4, 1, 2, 3).reshape(b, c * nz, ny, nx), m


@pytest.mark.parametrize('seed', [0, 1])
def test_values_and_both_gradients_match_the_materialising_reference(seed):
    depth, ctx, coords, (b, nx, ny, nz) = _case(seed=seed)
    depth.requires_grad_(True)
    ctx.requires_grad_(True)
    ref = _reference(depth, ctx, coords, b, nx, ny, nz)
    out, m = _ours(depth, ctx, coords, b, nx, ny, nz)
    assert 0 < m.nnz < depth.numel()  # points outside the grid are dropped
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(out)
    g_ref = torch.autograd.grad((ref * w).sum(), (depth, ctx))
    g_out = torch.autograd.grad((out * w).sum(), (depth, ctx))
    for a, r in zip(g_out, g_ref):
        torch.testing.assert_close(a, r)
    # Frustum points outside the grid get no depth gradient; empty cells stay zero.
    outside = (_cells(coords, b, nx, ny, nz) < 0).view(depth.shape)
    assert outside.any() and (g_out[0][outside] == 0).all()
    assert (out.abs().sum(1) == 0).any()


def test_float32_and_bfloat16_match_the_reference():
    for dtype, tol in ((torch.float32, dict(atol=1e-5, rtol=1e-5)), (torch.bfloat16, dict(atol=3e-2, rtol=3e-2))):
        depth, ctx, coords, (b, nx, ny, nz) = _case(dtype=dtype, d=12, fh=8, fw=10, c=16)
        depth.requires_grad_(True)
        ctx.requires_grad_(True)
        ref = _reference(depth.double(), ctx.double(), coords, b, nx, ny, nz)
        out, _ = _ours(depth, ctx, coords, b, nx, ny, nz)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), ref, **tol)
        w = torch.randn(out.shape, dtype=torch.float64)
        gd, gc = torch.autograd.grad((out.double() * w).sum(), (depth, ctx))
        dd, dc = torch.autograd.grad((ref * w).sum(), (depth, ctx))
        assert gd.dtype == dtype and gc.dtype == dtype
        torch.testing.assert_close(gd.double(), dd.double(), **tol)
        torch.testing.assert_close(gc.double(), dc.double(), **tol)


def test_gradcheck_float64():
    depth, ctx, coords, (b, nx, ny, nz) = _case(b=1, n=2, d=3, fh=2, fw=3, c=2, nx=4, ny=3, nz=1)
    m = FrustumMapping.from_cells(_cells(coords, b, nx, ny, nz), b * nz * ny * nx, 3, 6)
    depth.requires_grad_(True)
    ctx.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda dp, cx: depth_weighted_pool(dp, cx, m), (depth, ctx))


def test_mapping_is_compact_and_checks_its_inputs():
    depth, ctx, coords, (b, nx, ny, nz) = _case()
    m = FrustumMapping.from_cells(_cells(coords, b, nx, ny, nz), b * nz * ny * nx, depth.shape[1], 24)
    assert m.crow.dtype == torch.int32 and m.pt_by_cell.dtype == torch.int32
    assert int(m.crow[-1]) == m.nnz == int(m.crow_t[-1])
    with pytest.raises(ValueError, match='frustum points'):
        depth_weighted_pool(depth[:1], ctx[:1], m)


@pytest.mark.parametrize('seed', [0, 1])
def test_mapping_is_the_stable_sorts_by_cell_and_by_pixel(seed):
    """The CSR orders are the kept points stably sorted by cell and by pixel (the by-pixel order
    is built without sorting: points in (image, pixel, depth) order)."""
    depth, ctx, coords, (b, nx, ny, nz) = _case(d=7, seed=seed)
    cells = _cells(coords, b, nx, ny, nz).reshape(-1)
    d, hw = depth.shape[1], depth.shape[2] * depth.shape[3]
    m = FrustumMapping.from_cells(cells, b * nz * ny * nx, d, hw)
    pt = torch.nonzero(cells >= 0).squeeze(1)
    pix = (pt // (d * hw)) * hw + pt % hw
    by_cell, by_pix = torch.sort(cells[pt], stable=True).indices, torch.sort(pix, stable=True).indices
    assert torch.equal(m.pt_by_cell.long(), pt[by_cell]) and torch.equal(m.pix_by_cell.long(), pix[by_cell])
    assert torch.equal(m.pt_by_pix.long(), pt[by_pix]) and torch.equal(m.cell_by_pix.long(), cells[pt][by_pix])
    assert torch.equal(m.crow.long(), torch.cat([torch.zeros(1, dtype=torch.long),
                                                 torch.bincount(cells[pt], minlength=b * nz * ny * nx).cumsum(0)]))
    assert torch.equal(m.crow_t.long(), torch.cat([torch.zeros(1, dtype=torch.long),
                                                   torch.bincount(pix, minlength=m.num_pixels).cumsum(0)]))


def _cams(b=2, n=2):
    from fuller.models.camera import CameraRig

    k = torch.eye(4)
    k[0, 0], k[1, 1], k[0, 2], k[1, 2] = 40.0, 40.0, 44.0, 16.0
    mats = []
    for i in range(n):
        yaw = i * 1.6
        fwd = torch.tensor([torch.cos(torch.tensor(yaw)), torch.sin(torch.tensor(yaw)), 0.0])
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0]))
        cam2lidar = torch.eye(4)
        cam2lidar[:3, :3] = torch.stack([right, torch.tensor([0.0, 0.0, -1.0]), fwd], 1)
        cam2lidar[:3, 3] = torch.tensor([0.5, 0.0, 1.6])
        mats.append(torch.linalg.inv(cam2lidar))
    lidar2cam = torch.stack(mats).expand(b, n, 4, 4).clone()
    aug = torch.eye(4).expand(b, n, 4, 4).clone()
    aug[1, :, 0, 0] = aug[1, :, 1, 1] = 0.9  # the second sample resized
    lidar_aug = torch.eye(4).expand(b, 4, 4).clone()
    return CameraRig(k.expand(b, n, 4, 4).clone(), lidar2cam, aug, lidar_aug)


def test_view_transform_default_equals_the_materialising_path():
    from fuller.models.camera import LSSViewTransform

    torch.manual_seed(0)
    kw = dict(in_channels=8, out_channels=6, image_size=(32, 88), feature_size=(4, 11), xbound=(-20.0, 20.0, 0.8),
              ybound=(-20.0, 20.0, 0.8), zbound=(-10.0, 10.0, 20.0), dbound=(1.0, 30.0, 0.5), downsample=1)
    csr = LSSViewTransform(**kw).double()
    ref = LSSViewTransform(**kw, pool_impl='scatter').double()
    ref.load_state_dict(csr.state_dict())
    assert csr.pool_impl == 'csr'
    cams = _cams()
    cams = type(cams)(*(t.double() for t in (cams.cam2img, cams.lidar2cam, cams.img_aug, cams.lidar_aug)))
    feats = torch.randn(2, 2, 8, 4, 11, dtype=torch.float64, requires_grad=True)
    a, r = csr(feats, cams), ref(feats, cams)
    assert r.abs().sum() > 0
    torch.testing.assert_close(a, r)
    w = torch.randn_like(a)
    torch.testing.assert_close(torch.autograd.grad((a * w).sum(), feats)[0], torch.autograd.grad((r * w).sum(), feats)[0])
    # The mapping is reused while the cameras are unchanged, rebuilt when they change.
    m1 = csr.mapping(cams)
    assert csr.mapping(cams) is m1
    cams.img_aug[0, 0, 0, 0] = 1.1
    assert csr.mapping(cams) is not m1
