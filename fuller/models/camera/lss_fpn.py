"""BEVFusion's camera neck (GeneralizedLSSFPN): top-down fusion by upsample + concatenate.

Unlike mmdet's FPN (lateral 1x1 convs to a common width, then upsample + add), each level
``i`` below the top concatenates its backbone feature with the upsampled output of the level
above and mixes them with a 1x1 ``ConvModule`` then a 3x3 ``ConvModule`` (conv, BN, ReLU). The
top level only feeds the one below, so ``L`` inputs give ``L - 1`` outputs, finest first; the
camera encoder lifts the first. Parameter names (``lateral_convs.<i>.conv``,
``lateral_convs.<i>.bn``, ``fpn_convs.<i>...``) are BEVFusion's, so its camera necks load as
they are.
"""

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from fuller.registry import MODELS


@MODELS.register_module()
class GeneralizedLSSFPN(BaseModule):
    """Args (BEVFusion's, with its defaults):
        in_channels: channels of the backbone levels, finest first.
        out_channels: channels of every output.
        num_outs: kept for config compatibility (the outputs are ``len(in_channels) - 1``
            with ``end_level=-1``; with an ``end_level`` it must equal ``end_level - start_level``).
        start_level: first backbone level used.
        end_level: one past the last level with an output; ``-1``: all but the top.
        no_norm_on_lateral: no BN in the 1x1 convs.
        conv_cfg, norm_cfg, act_cfg: of every ``ConvModule``.
        upsample_cfg: ``F.interpolate`` arguments (BEVFusion's configs: bilinear,
            ``align_corners=False``).
        init_cfg: mmengine init config.
    """

    def __init__(self, in_channels: list, out_channels: int, num_outs: int, start_level: int = 0,
                 end_level: int = -1, no_norm_on_lateral: bool = False, conv_cfg: dict | None = None,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 upsample_cfg: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        norm_cfg = dict(type='BN2d') if norm_cfg is None else norm_cfg
        act_cfg = dict(type='ReLU') if act_cfg is None else act_cfg
        self.upsample_cfg = dict(mode='bilinear', align_corners=True) if upsample_cfg is None else dict(upsample_cfg)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        if end_level == -1:
            end = len(self.in_channels) - 1
        else:
            if not end_level <= len(self.in_channels) or num_outs != end_level - start_level:
                raise ValueError(f'GeneralizedLSSFPN: end_level={end_level} needs end_level <= {len(self.in_channels)} '
                                 f'and num_outs == end_level - start_level (got num_outs={num_outs})')
            end = end_level
        self.start_level, self.end = start_level, end
        self.lateral_convs, self.fpn_convs = nn.ModuleList(), nn.ModuleList()
        for i in range(start_level, end):
            above = self.in_channels[i + 1] if i == end - 1 else out_channels
            self.lateral_convs.append(ConvModule(self.in_channels[i] + above, out_channels, 1, conv_cfg=conv_cfg,
                                                 norm_cfg=None if no_norm_on_lateral else norm_cfg, act_cfg=act_cfg,
                                                 inplace=False))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1, conv_cfg=conv_cfg,
                                             norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False))

    def forward(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'GeneralizedLSSFPN: {len(inputs)} inputs for in_channels={self.in_channels}')
        x = list(inputs[self.start_level:self.end + 1])
        for j in range(len(self.lateral_convs) - 1, -1, -1):  # top-down: the level above is already fused
            up = F.interpolate(x[j + 1], size=x[j].shape[2:], **self.upsample_cfg)
            x[j] = self.fpn_convs[j](self.lateral_convs[j](torch.cat([x[j], up], 1)))
        return tuple(x[:len(self.lateral_convs)])
