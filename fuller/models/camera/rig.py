"""The camera rig of a batch (intrinsics, extrinsics, image and LiDAR augmentations), carried as one object."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class CameraRig:
    """Per-camera transforms of a batch of B samples with N cameras.

    Attributes:
        cam2img: [B, N, 4, 4] intrinsics (3x3 in the top-left).
        lidar2cam: [B, N, 4, 4] LiDAR (original frame) -> camera.
        img_aug: [B, N, 4, 4] original pixel -> augmented pixel (resize/crop/flip).
        lidar_aug: [B, 4, 4] original LiDAR frame -> augmented LiDAR frame.
    """

    cam2img: Tensor
    lidar2cam: Tensor
    img_aug: Tensor
    lidar_aug: Tensor

    @classmethod
    def from_metainfo(cls, metas: list[dict], device: torch.device | str = 'cpu') -> 'CameraRig':
        def stack(key: str, default=None) -> Tensor:
            arrs = [np.asarray(m[key] if key in m else default, dtype=np.float32) for m in metas]
            return torch.from_numpy(np.stack(arrs)).to(device)

        return cls(stack('cam2img'), stack('lidar2cam'), stack('img_aug_matrix'),
                   stack('lidar_aug_matrix', np.eye(4)))

    def frustum_to_lidar(self) -> Tensor:
        """[B, N, 4, 4] mapping (u*d, v*d, d, 1) in *original* pixels to the augmented LiDAR frame."""
        return self.lidar_aug[:, None] @ torch.linalg.inv(self.lidar2cam) @ torch.linalg.inv(self.cam2img)
