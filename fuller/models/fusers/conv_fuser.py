"""Convolutional fuser of the camera and LiDAR BEV maps."""

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from fuller.registry import MODELS


@MODELS.register_module()
class ConvFuser(BaseModule):
    """Concatenate the modality BEV maps and mix them with a 3x3 conv.

    Its inputs are where modality-level (intra) gradient calibration acts: the detector
    passes them through the calibration function before calling the fuser.

    Args:
        in_channels: channels of each input, in the order the detector passes them
            (camera, LiDAR).
        out_channels: fused channels.
        init_cfg: mmengine init config.
    """

    def __init__(self, in_channels: list[int], out_channels: int, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.fuse = nn.Sequential(nn.Conv2d(sum(in_channels), out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(True))

    def forward(self, feats: list[Tensor]) -> Tensor:
        device = feats[0].device.type
        if torch.is_autocast_enabled(device):
            # The conv casts its input to the autocast dtype anyway: cast each map before the
            # concatenation (the same values), in the conv's memory format, instead of
            # concatenating in fp32 (the LiDAR map) and reordering the result (2 ms of the
            # demo's bf16 step on 2 cores).
            dtype = torch.get_autocast_dtype(device)
            fmt = (torch.channels_last if self.fuse[0].weight.is_contiguous(memory_format=torch.channels_last)
                   else torch.contiguous_format)
            feats = [f.to(dtype).contiguous(memory_format=fmt) for f in feats]
        return self.fuse(torch.cat(feats, 1))
