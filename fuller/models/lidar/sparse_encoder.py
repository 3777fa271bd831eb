"""Sparse 3D convolutional encoder (spconv) that flattens to BEV.

spconv's default convolution algorithms need CUDA; on CPU only ``ConvAlgo.Native`` works,
so the algorithm is chosen from the device of the input at every forward.

Under mixed precision the sparse encoder runs in fp32 (autocast off inside it): spconv has
no bfloat16 kernels and no half-precision CPU kernels, and the encoder is a small part of
the step next to the dense camera branch and BEV decoder, which autocast as usual.
"""

import torch
from torch import Tensor, nn

from fuller.registry import MODELS


def _spconv():
    import spconv.pytorch as spconv  # lazy: keeps `import fuller` light

    return spconv


def select_spconv_algo(module: nn.Module, device: torch.device, current: str | None) -> str:
    """Set every sparse conv of ``module`` to the algorithm ``device`` supports (``ConvAlgo.Native``
    on CPU, ``MaskImplicitGemm`` on CUDA) unless ``current`` (the device type it was last set
    for) is already it; the device type."""
    if current == device.type:
        return current
    sp = _spconv()
    from spconv.pytorch.conv import SparseConvolution

    algo = sp.ConvAlgo.MaskImplicitGemm if device.type == 'cuda' else sp.ConvAlgo.Native
    for m in module.modules():
        if isinstance(m, SparseConvolution):
            m.algo = algo
    return device.type


@MODELS.register_module()
class SparseBEVEncoder(nn.Module):
    """Stack of submanifold/strided sparse convs, then z folded into channels.

    Args:
        in_channels: voxel feature channels.
        sparse_shape: (nz, ny, nx) of the voxel grid.
        base_channels: channels of the first stage.
        stages: number of stages; every stage after the first halves x, y and z.
        blocks_per_stage: submanifold convs per stage.
        out_channels: channels of the z-collapsing output conv (BEV channels are
            ``out_channels * nz_out``).
    """

    def __init__(self, in_channels: int, sparse_shape: tuple, base_channels: int = 16, stages: int = 3,
                 blocks_per_stage: int = 1, out_channels: int = 64) -> None:
        super().__init__()
        sp = _spconv()
        self.sparse_shape = list(sparse_shape)

        def block(cin: int, cout: int, key: str, stride: int = 1):
            conv = (sp.SubMConv3d(cin, cout, 3, padding=1, bias=False, indice_key=key) if stride == 1 else
                    sp.SparseConv3d(cin, cout, 3, stride=stride, padding=1, bias=False, indice_key=key))
            return sp.SparseSequential(conv, nn.BatchNorm1d(cout, eps=1e-3, momentum=0.01), nn.ReLU(True))

        layers = [block(in_channels, base_channels, 'subm0')]
        c = base_channels
        nz = sparse_shape[0]
        for s in range(stages):
            if s > 0:
                layers.append(block(c, c * 2, f'down{s}', stride=2))
                c *= 2
                nz = (nz + 1) // 2
            layers += [block(c, c, f'subm{s}') for _ in range(blocks_per_stage)]
        self.body = sp.SparseSequential(*layers)
        self.conv_out = sp.SparseSequential(
            sp.SparseConv3d(c, out_channels, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False),
            nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01), nn.ReLU(True))
        self.out_channels = out_channels * ((nz - 3) // 2 + 1)
        self._algo_device: str | None = None


    def forward(self, feats: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        """Args: feats [M, C] voxel features; coors [M, 4] int (batch, z, y, x).

        Returns: [B, C_out, ny', nx'] BEV features.
        """
        sp = _spconv()
        self._algo_device = select_spconv_algo(self, feats.device, self._algo_device)
        with torch.autocast(feats.device.type, enabled=False):
            x = sp.SparseConvTensor(feats.float(), coors.int(), self.sparse_shape, batch_size)
            x = self.conv_out(self.body(x)).dense()  # [B, C, D, H, W]
        b, c, d, h, w = x.shape
        return x.view(b, c * d, h, w)
