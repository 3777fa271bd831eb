"""BEVFusion's LiDAR backbone: mmdet3d's ``SparseEncoder`` with residual basic blocks.

BEVFusion's configs build ``SparseEncoder`` with ``block_type: basicblock``: a submanifold
input conv, four stages of residual ``SparseBasicBlock``\\s (two submanifold convs each) closed,
in every stage but the last, by a strided sparse conv, then a (3, 1, 1) conv with z-stride 2 that
leaves 2 z-cells, folded into channels (128 x 2 = 256 BEV channels). This is mmdet3d's
implementation, made to run where FULLER runs: spconv's default algorithms need CUDA, so the
algorithm is chosen from the input's device (``ConvAlgo.Native`` on CPU), and the encoder runs
in fp32 under any autocast (spconv has no bfloat16 kernels and no half-precision CPU kernels).

Axis order: mmdet3d keeps voxel coordinates as (z, y, x), BEVFusion-MIT's fork as (x, y, z);
its ``sparse_shape [1440, 1440, 41]`` is ``[41, 1440, 1440]`` here and its stage-3 padding
``[1, 1, 0]`` (x, y, z) is ``[0, 1, 1]``. A BEVFusion-MIT checkpoint's sparse kernels therefore
have their three spatial axes reversed relative to this module's.
"""

import torch
from mmdet3d.models.middle_encoders import SparseEncoder
from torch import Tensor

from fuller.registry import MODELS

from .sparse_encoder import select_spconv_algo


def _z(padding) -> int:
    return padding if isinstance(padding, int) else int(padding[0])


@MODELS.register_module()
class ResidualSparseEncoder(SparseEncoder):
    """mmdet3d's ``SparseEncoder`` (all its arguments; ``sparse_shape`` is (z, y, x)) with an
    ``out_channels`` attribute (BEV channels: ``output_channels`` x the z-cells left) and the
    device-dependent spconv algorithm.

    The default arguments are BEVFusion's (configs/nuscenes/det/transfusion/secfpn/camera+lidar/
    default.yaml, lidar.backbone) in mmdet3d's axis order.
    """

    def __init__(self, in_channels: int = 5, sparse_shape=(41, 1440, 1440), order=('conv', 'norm', 'act'),
                 output_channels: int = 128, encoder_channels=((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
                 encoder_paddings=((0, 0, 1), (0, 0, 1), (0, 0, (0, 1, 1)), (0, 0)), block_type: str = 'basicblock',
                 **kwargs) -> None:
        super().__init__(in_channels, list(sparse_shape), order=tuple(order), output_channels=output_channels,
                         encoder_channels=tuple(tuple(c) for c in encoder_channels),
                         encoder_paddings=tuple(tuple(p) for p in encoder_paddings), block_type=block_type, **kwargs)
        self.block_type = block_type
        self.out_channels = output_channels * self.out_depth()
        self._algo_device: str | None = None

    def out_depth(self) -> int:
        """z-cells of the output: the strided convs (kernel 3, stride 2) and the (3, 1, 1) one."""
        z = self.sparse_shape[0]
        last = len(self.encoder_channels) - 1
        for i, blocks in enumerate(self.encoder_channels):
            for j in range(len(blocks)):
                strided = (j == len(blocks) - 1 and i != last) if self.block_type == 'basicblock' else (i != 0 and j == 0)
                if strided:
                    z = (z + 2 * _z(self.encoder_paddings[i][j]) - 3) // 2 + 1
        return (z - 3) // 2 + 1

    def forward(self, voxel_features: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        """Args: voxel features [M, C], coors [M, 4] (batch, z, y, x). Returns: [B, C_out, ny', nx']."""
        self._algo_device = select_spconv_algo(self, voxel_features.device, self._algo_device)
        with torch.autocast(voxel_features.device.type, enabled=False):
            return super().forward(voxel_features.float(), coors, batch_size)
