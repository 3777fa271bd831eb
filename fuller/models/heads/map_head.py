"""BEV map segmentation head (6 classes, per-class sigmoid focal loss)."""

import torch
import torch.nn.functional as F
from mmdet3d.structures import Det3DDataSample
from mmengine.model import BaseModule
from torch import Tensor, nn

from fuller.registry import MODELS


def sigmoid_focal_loss(logits: Tensor, target: Tensor, alpha: float = -1.0, gamma: float = 2.0) -> Tensor:
    """Mean sigmoid focal loss per class.

    Args:
        logits, target: [B, K, H, W]; target in {0, 1}.
        alpha: positive-class weight in [0, 1], or < 0 for none (BEVFusion uses none).
        gamma: focusing parameter.

    Returns:
        [K] loss of each class, averaged over batch and pixels.
    """
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction='none')
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean((0, 2, 3))


def _bilinear_matrix(coords: Tensor, size: int) -> Tensor:
    """[len(coords), size] weights of 1-D bilinear sampling at normalised ``coords`` (-1 and 1
    the outer edges of the ``size`` input cells: ``align_corners=False``) with zero padding,
    as ``F.grid_sample`` weighs the input along one axis."""
    pos = ((coords.double() + 1) * size - 1) / 2
    lo = pos.floor()
    frac = pos - lo
    out = torch.zeros(len(coords), size, dtype=torch.float64)
    rows = torch.arange(len(coords))
    for tap, weight in ((lo, 1 - frac), (lo + 1, frac)):
        inside = (tap >= 0) & (tap <= size - 1)
        out[rows[inside], tap[inside].long()] += weight[inside]
    return out.to(coords.dtype)


class BEVGridTransform(nn.Module):
    """Resample a BEV map from the decoder's grid to the segmentation grid: BEVFusion's
    ``BEVGridTransform`` (``F.grid_sample``, bilinear, ``align_corners=False``, zero padding) on
    the grid ``grid`` holds. The grid is a product of an x and a y axis, so the sampling is
    computed as two matrix products, ``A_y @ x @ A_x^T``, with the same weights: equal to
    ``grid_sample`` up to rounding (tested), and a third of its forward + backward time on a
    2-core CPU (5 vs 16 ms for the demo's 128 x 64 x 64 map under bf16). A channels-last input
    is transformed in NHWC and comes out channels-last, as the head's convs read it (the map
    head's forward + backward under bf16: 25 against 31 ms with the NCHW products and the
    reorders around them, Zen 5)."""

    def __init__(self, input_scope: list, output_scope: list) -> None:
        super().__init__()
        (ixmin, ixmax, ixstep), (iymin, iymax, iystep) = input_scope
        self.input_shape = (int(round((iymax - iymin) / iystep)), int(round((ixmax - ixmin) / ixstep)))
        axes = []
        for (omin, omax, step), (imin, imax) in zip(output_scope, [(ixmin, ixmax), (iymin, iymax)]):
            centers = torch.arange(omin + step / 2, omax, step)
            axes.append((centers - imin) / (imax - imin) * 2 - 1)  # align_corners=False normalisation
        gy, gx = torch.meshgrid(axes[1], axes[0], indexing='ij')
        self.register_buffer('grid', torch.stack([gx, gy], -1)[None], persistent=False)
        self.register_buffer('weights_x', _bilinear_matrix(axes[0], self.input_shape[1]).T.contiguous(),
                             persistent=False)  # [W_in, W_out]
        self.register_buffer('weights_y', _bilinear_matrix(axes[1], self.input_shape[0]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.input_shape:  # grid_sample's answer for any input size
            return F.grid_sample(x, self.grid.expand(x.shape[0], -1, -1, -1).to(x.dtype), align_corners=False)
        wy, wx = self.weights_y.to(x.dtype), self.weights_x.to(x.dtype)  # autocast: in its dtype
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # NHWC in, NHWC out (the channels-last convs that follow read it without a reorder):
            # columns on [B, H, W, C], then rows on [B, H, W' * C]
            b, c = x.shape[:2]
            t = wx.T @ x.permute(0, 2, 3, 1)  # [B, H, W', C]
            out = wy @ t.reshape(b, t.shape[1], -1)  # [B, H', W' * C]
            return out.view(b, wy.shape[0], wx.shape[1], c).permute(0, 3, 1, 2)
        return wy @ x @ wx


@MODELS.register_module()
class BEVSegmentationHead(BaseModule):
    """Map segmentation from the shared BEV feature.

    Standard design: two 3x3 conv-BN-ReLU layers of ``channels`` (BEVFusion: ``in_channels``);
    lightweight design: depthwise-separable convs at ``channels // 2`` (the parameter saving is
    reported by ``tools/analysis/param_count.py``). Both run on the map grid, so their cost grows
    with its cell count and with ``channels``: the CPU demo model narrows them.

    Args:
        in_channels: channels of the shared feature.
        grid_transform: ``input_scope``/``output_scope`` lists of (min, max, step) for x, y.
        classes: map class names.
        channels: width of the hidden layers; None for ``in_channels``.
        lightweight: use the lightweight design.
        loss_weight: multiplier of the focal loss.
        focal_alpha, focal_gamma: focal loss parameters.
        init_cfg: mmengine init config.
    """

    def __init__(self, in_channels: int, grid_transform: dict, classes: tuple, channels: int | None = None,
                 lightweight: bool = False, loss_weight: float = 1.0, focal_alpha: float = -1.0, focal_gamma: float = 2.0,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.classes = tuple(classes)
        self.loss_weight = loss_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.transform = BEVGridTransform(**grid_transform)
        c, m = in_channels, channels or in_channels
        if lightweight:
            m = m // 2
            self.body = nn.Sequential(
                nn.Conv2d(c, m, 1, bias=False), nn.BatchNorm2d(m), nn.ReLU(True),
                nn.Conv2d(m, m, 3, padding=1, groups=m, bias=False), nn.BatchNorm2d(m), nn.ReLU(True),
                nn.Conv2d(m, m, 1, bias=False), nn.BatchNorm2d(m), nn.ReLU(True))
        else:
            self.body = nn.Sequential(
                nn.Conv2d(c, m, 3, padding=1, bias=False), nn.BatchNorm2d(m), nn.ReLU(True),
                nn.Conv2d(m, m, 3, padding=1, bias=False), nn.BatchNorm2d(m), nn.ReLU(True))
        self.cls = nn.Conv2d(m, len(self.classes), 1)

    def expected_input_shape(self) -> tuple[tuple[int, int], str]:
        """(H, W) of the BEV feature this head expects, and the config key that sets it."""
        return self.transform.input_shape, 'model.heads.map.grid_transform.input_scope'

    def forward(self, feats: Tensor) -> Tensor:
        """Args: feats [B, C, H, W]. Returns: logits [B, K, H', W'] on the map grid."""
        return self.cls(self.body(self.transform(feats)))

    def loss(self, feats: Tensor, samples: list[Det3DDataSample]) -> dict[str, Tensor]:
        logits = self(feats)
        target = torch.stack([s.gt_map for s in samples]).to(logits)
        if target.shape != logits.shape:
            raise ValueError(f'map ground truth {tuple(target.shape)} does not match the head output '
                             f'{tuple(logits.shape)}: LoadBEVMapMask xbound/ybound must equal '
                             f'heads.map.grid_transform.output_scope')
        per_class = sigmoid_focal_loss(logits.float(), target.float(), self.focal_alpha, self.focal_gamma)
        return {'loss_focal': per_class.sum() * self.loss_weight}

    def predict(self, feats: Tensor, samples: list[Det3DDataSample]) -> list[Tensor]:
        """Returns per sample [K, H', W'] probabilities."""
        return list(self(feats).sigmoid())
