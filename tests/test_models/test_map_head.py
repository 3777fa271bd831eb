"""The map head's hidden width: BEVFusion's design by default, narrower where asked."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fuller.models.heads.map_head import BEVSegmentationHead

GRID = dict(input_scope=[[-51.2, 51.2, 1.6], [-51.2, 51.2, 1.6]], output_scope=[[-50, 50, 1.0], [-50, 50, 1.0]])
CLASSES = ('drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider')


def _convs(head):
    return [m for m in head.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize('channels, lightweight, hidden', [(None, False, 128), (64, False, 64), (None, True, 64),
                                                            (64, True, 32)])
def test_hidden_width_and_output_grid(channels, lightweight, hidden):
    head = BEVSegmentationHead(128, GRID, CLASSES, channels=channels, lightweight=lightweight)
    convs = _convs(head)
    assert convs[0].in_channels == 128
    assert all(c.out_channels == hidden for c in convs[:-1])
    assert (head.cls.in_channels, head.cls.out_channels) == (hidden, len(CLASSES))
    out = head(torch.randn(2, 128, 64, 64))
    assert out.shape == (2, len(CLASSES), 100, 100)


def test_default_width_is_the_input_width():
    """BEVFusion's head keeps the shared feature's width; the nuScenes configs rely on it."""
    head = BEVSegmentationHead(256, GRID, CLASSES)
    narrow = BEVSegmentationHead(256, GRID, CLASSES, channels=64)
    n_params = sum(p.numel() for p in head.parameters())
    assert n_params == 2 * (256 * 256 * 9 + 2 * 256) + 256 * 6 + 6
    assert sum(p.numel() for p in narrow.parameters()) == 256 * 64 * 9 + 64 * 64 * 9 + 4 * 64 + 64 * 6 + 6


@pytest.mark.parametrize('scopes', [
    # the demo: 64 x 64 cells of 1.6 m -> 100 x 100 of 1 m
    ([[-51.2, 51.2, 1.6], [-51.2, 51.2, 1.6]], [[-50.0, 50.0, 1.0], [-50.0, 50.0, 1.0]]),
    # BEVFusion's map head (configs/nuscenes/seg/default.yaml, heads.map.grid_transform):
    # 128 x 128 cells of 0.8 m -> 200 x 200 of 0.5 m
    ([[-51.2, 51.2, 0.8], [-51.2, 51.2, 0.8]], [[-50.0, 50.0, 0.5], [-50.0, 50.0, 0.5]]),
    # an output reaching past the input (zero padding) on a non-square grid
    ([[-10.0, 10.0, 1.0], [-5.0, 5.0, 0.5]], [[-12.0, 12.0, 0.75], [-6.0, 6.0, 0.4]]),
])
def test_grid_transform_equals_grid_sample(scopes):
    """The separable matrix form is BEVFusion's F.grid_sample (bilinear, align_corners=False,
    zeros padding) on the same grid, values and gradients, also on a channels-last input."""
    from fuller.models.heads.map_head import BEVGridTransform

    t = BEVGridTransform(*scopes)
    torch.manual_seed(0)
    x = torch.randn(2, 5, *t.input_shape, dtype=torch.float64, requires_grad=True)
    ref = F.grid_sample(x, t.grid.expand(2, -1, -1, -1).double(), align_corners=False)
    t = t.double()
    out = t(x)
    assert out.shape == ref.shape
    # the weights are stored in float32 (the model's dtype): equal to its rounding
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn_like(ref)
    g_ref = torch.autograd.grad(ref, x, g)[0]
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], g_ref, rtol=0, atol=1e-6)
    # a channels-last input (the demo's bf16 model) takes the NHWC path: channels-last out, same
    # values and gradients
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out_c = t(xc)
    assert out_c.is_contiguous(memory_format=torch.channels_last) and not out_c.is_contiguous()
    torch.testing.assert_close(out_c, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(out_c, xc, g)[0], g_ref, rtol=0, atol=1e-6)
    xf = x.detach().float().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(t.float()(xf), ref.detach().float(), rtol=1e-5, atol=1e-5)
