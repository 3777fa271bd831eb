"""The map head's hidden width: BEVFusion's design by default, narrower where asked."""

import pytest
import torch
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
