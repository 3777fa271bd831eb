"""3D detection head: CenterPoint-style, on mmdet3d's :class:`CenterHead`."""

from mmdet3d.structures import Det3DDataSample
from torch import Tensor, nn

from fuller.registry import MODELS


@MODELS.register_module()
class CenterPointDetHead(nn.Module):
    """Heatmap + regression detection head (10 nuScenes classes with velocity).

    Wraps mmdet3d's ``CenterHead`` to FULLER's head interface (a single BEV tensor in).
    The lightweight design is a config choice: one task group with all classes and narrower
    ``head_conv`` instead of BEVFusion/CenterPoint's six groups.

    Args:
        **center_head: ``CenterHead`` arguments.
    """

    def __init__(self, **center_head) -> None:
        super().__init__()
        self.head = MODELS.build(dict(type='mmdet3d.CenterHead', **center_head))

    def expected_input_shape(self) -> tuple[tuple[int, int], str] | None:
        """(H, W) of the BEV feature the target assignment assumes, and the config key."""
        cfg = self.head.train_cfg
        if not cfg:
            return None
        gx, gy = cfg['grid_size'][:2]
        f = cfg['out_size_factor']
        return (gy // f, gx // f), 'model.heads.det.train_cfg.grid_size / out_size_factor'

    def loss(self, feats: Tensor, samples: list[Det3DDataSample]) -> dict[str, Tensor]:
        losses = self.head.loss([feats], samples)
        # Sum per-task-group terms into heatmap and box losses.
        out: dict[str, Tensor] = {}
        for k, v in losses.items():
            name = k.split('.', 1)[-1]
            out[name] = out[name] + v if name in out else v
        return out

    def predict(self, feats: Tensor, samples: list[Det3DDataSample]) -> list:
        return self.head.predict([feats], samples)
