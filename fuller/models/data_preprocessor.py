"""The model's data preprocessor: multi-view images stacked and normalized, points kept as a list (the
camera matrices stay in the samples' metainfo, read by ``FullerNet.extract_bev``)."""

import torch
from mmengine.model import BaseDataPreprocessor

from fuller.registry import MODELS


@MODELS.register_module()
class MultiModalDataPreprocessor(BaseDataPreprocessor):
    """Stack images to [B, N, 3, H, W] and normalize them; keep points as a list.

    Args:
        mean, std: RGB normalization (0-255 scale).
    """

    def __init__(self, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        out = {}
        if 'points' in inputs:
            out['points'] = [p.float() for p in inputs['points']]
        if 'imgs' in inputs:
            imgs = torch.stack(list(inputs['imgs'])).float()
            out['imgs'] = (imgs - self.mean) / self.std
        return {'inputs': out, 'data_samples': data['data_samples']}
