"""3D detection head: CenterPoint-style, on mmdet3d's :class:`CenterHead`."""

import torch
from mmdet3d.structures import Det3DDataSample
from mmengine.model import BaseModule
from mmengine.model.weight_init import normal_init, update_init_info
from torch import Tensor

from fuller.registry import MODELS


@MODELS.register_module()
class CenterPointDetHead(BaseModule):
    """Heatmap + regression detection head (10 nuScenes classes with velocity).

    Wraps mmdet3d's ``CenterHead`` to FULLER's head interface (a single BEV tensor in).
    The lightweight design is a config choice: one task group with all classes and narrower
    ``head_conv`` instead of BEVFusion/CenterPoint's six groups.

    Initialisation: mmdet3d's ``SeparateHead`` Kaiming-initialises every conv (``fan_out``),
    which for a branch's last conv (1-10 outputs, 3x3 kernel, 64 inputs) gives outputs with a
    standard deviation of ~2.5: the heatmap starts with many cells near probability 1 (first
    heatmap losses in the hundreds) and the box regression far from any target. The last
    conv of every branch therefore gets the prior initialisation of RetinaNet/CenterNet
    instead: weights ``N(0, last_conv_init_std)``, bias ``init_bias`` for the heatmap (every
    cell starts at ``sigmoid(init_bias)``, 0.1 for -2.19) and 0 for the regression branches.

    Precision: under mixed precision the convolutions run in the autocast dtype, and the losses and
    the box decoding in fp32 on fp32 copies of the predictions, as BEVFusion's ``CenterHead``
    (``@force_fp32(apply_to=("preds_dicts"))`` on ``loss`` and ``get_bboxes``,
    ``mmdet3d/models/heads/bbox/centerpoint.py``). mmdet3d 1.x's ``CenterHead`` dropped those
    decorators; in bf16 its ``clip_sigmoid`` clamps to ``1 - 1e-4``, which bf16 rounds to 1, and
    the Gaussian focal loss and the scores ranked for detection carry bf16's 8 mantissa bits.

    Args:
        last_conv_init_std: standard deviation of the weights of each branch's last conv.
        init_cfg: mmengine init config.
        **center_head: ``CenterHead`` arguments.
    """

    def __init__(self, last_conv_init_std: float = 0.01, init_cfg: dict | None = None, **center_head) -> None:
        super().__init__(init_cfg=init_cfg)
        self.last_conv_init_std = last_conv_init_std
        self.head = MODELS.build(dict(type='mmdet3d.CenterHead', **center_head))

    def init_weights(self) -> None:
        super().init_weights()
        std = self.last_conv_init_std
        for task_head in self.head.task_heads:
            for branch in task_head.heads:
                last = getattr(task_head, branch)[-1]
                bias = task_head.init_bias if branch == 'heatmap' else 0.0
                normal_init(last, std=std, bias=bias)
                if hasattr(last, '_params_init_info'):
                    update_init_info(last, init_info=f'{branch} prior: N(0, {std}), bias {bias}')

    def expected_input_shape(self) -> tuple[tuple[int, int], str] | None:
        """(H, W) of the BEV feature the target assignment assumes, and the config key."""
        cfg = self.head.train_cfg
        if not cfg:
            return None
        gx, gy = cfg['grid_size'][:2]
        f = cfg['out_size_factor']
        return (gy // f, gx // f), 'model.heads.det.train_cfg.grid_size / out_size_factor'

    def _preds_fp32(self, feats: Tensor) -> tuple[list[dict[str, Tensor]], ...]:
        """The head's convolutions on ``feats`` (autocast as set), every prediction as fp32."""
        preds = self.head([feats])
        return tuple([{k: v.float() for k, v in level.items()} for level in task] for task in preds)

    def loss(self, feats: Tensor, samples: list[Det3DDataSample]) -> dict[str, Tensor]:
        preds = self._preds_fp32(feats)
        with torch.autocast(feats.device.type, enabled=False):
            losses = self.head.loss_by_feat(preds, [s.gt_instances_3d for s in samples])
        # Sum per-task-group terms into heatmap and box losses.
        out: dict[str, Tensor] = {}
        for k, v in losses.items():
            name = k.split('.', 1)[-1]
            out[name] = out[name] + v if name in out else v
        return out

    def predict(self, feats: Tensor, samples: list[Det3DDataSample]) -> list:
        preds = self._preds_fp32(feats)
        with torch.autocast(feats.device.type, enabled=False):
            return self.head.predict_by_feat(preds, [s.metainfo for s in samples])
