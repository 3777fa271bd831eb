"""Image and BEV augmentations that keep camera geometry, boxes and the map consistent."""

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from fuller.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ImageAug3D(BaseTransform):
    """Resize, crop and flip every camera image; record it in ``img_aug_matrix``.

    The image is resized by a factor drawn from ``resize_lim`` (fixed to its mean when
    ``is_train`` is False), cropped to ``final_dim`` (H, W) from the bottom (the top is mostly
    sky) and optionally flipped horizontally. ``img_aug_matrix`` maps original pixel
    coordinates to augmented ones, so the view transform can undo it exactly.

    Args:
        final_dim: output (H, W).
        resize_lim: (min, max) resize factor.
        bot_pct_lim: (min, max) fraction of the resized height cut from the bottom.
        rand_flip: flip horizontally with probability 0.5 in training.
        is_train: random (train) or deterministic (test) parameters.
    """

    def __init__(self, final_dim: tuple, resize_lim: tuple, bot_pct_lim: tuple = (0.0, 0.0),
                 rand_flip: bool = False, is_train: bool = False) -> None:
        self.final_dim = tuple(final_dim)
        self.resize_lim = tuple(resize_lim)
        self.bot_pct_lim = tuple(bot_pct_lim)
        self.rand_flip = rand_flip
        self.is_train = is_train

    def _params(self, h: int, w: int):
        fh, fw = self.final_dim
        if self.is_train:
            resize = np.random.uniform(*self.resize_lim)
            bot = np.random.uniform(*self.bot_pct_lim)
            flip = self.rand_flip and np.random.rand() < 0.5
        else:
            resize = float(np.mean(self.resize_lim))
            bot = float(np.mean(self.bot_pct_lim))
            flip = False
        nh, nw = int(round(h * resize)), int(round(w * resize))
        top = int((1 - bot) * nh) - fh
        left = int(np.random.uniform(0, max(0, nw - fw))) if self.is_train else int(max(0, nw - fw) / 2)
        return resize, (nw, nh), (left, top), flip

    def transform(self, results: dict) -> dict:
        fh, fw = self.final_dim
        out, mats = [], []
        for img, prev in zip(results['imgs'], results['img_aug_matrix']):
            h, w = img.shape[:2]
            resize, (nw, nh), (left, top), flip = self._params(h, w)
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
            canvas = np.zeros((fh, fw, 3), np.float32)
            y0, x0 = max(top, 0), max(left, 0)
            crop = img[y0: top + fh, x0: left + fw]
            canvas[y0 - top: y0 - top + crop.shape[0], x0 - left: x0 - left + crop.shape[1]] = crop
            m = np.eye(4, dtype=np.float32)
            m[0, 0] = m[1, 1] = resize
            m[0, 3], m[1, 3] = -left, -top
            if flip:
                canvas = canvas[:, ::-1].copy()
                f = np.eye(4, dtype=np.float32)
                f[0, 0], f[0, 3] = -1.0, fw
                m = f @ m
            out.append(canvas)
            mats.append(m @ prev)
        results['imgs'] = out
        results['img_aug_matrix'] = np.stack(mats).astype(np.float32)
        results['img_shape'] = self.final_dim
        return results


@TRANSFORMS.register_module()
class BEVAugmentation(BaseTransform):
    """Global rotation, scaling, translation and BEV flips, applied to everything 3D.

    Points and ground-truth boxes are transformed; the same transform is composed into
    ``lidar_aug_matrix`` ([4, 4], original LiDAR frame -> augmented frame), which the view
    transform uses to place camera features and the map rasterizer uses to draw the map in
    the augmented frame. With ``is_train=False`` it only records the identity.

    Args:
        rot_range: rotation angle range, rad.
        scale_range: isotropic scale range.
        trans_std: std of the translation per axis, m.
        flip_ratio_x: probability of flipping across the x axis (y -> -y).
        flip_ratio_y: probability of flipping across the y axis (x -> -x).
        is_train: apply random augmentation.
    """

    def __init__(self, rot_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), trans_std=(0.0, 0.0, 0.0),
                 flip_ratio_x: float = 0.5, flip_ratio_y: float = 0.5, is_train: bool = True) -> None:
        self.rot_range = rot_range
        self.scale_range = scale_range
        self.trans_std = np.asarray(trans_std, dtype=np.float32)
        self.flip_ratio_x = flip_ratio_x
        self.flip_ratio_y = flip_ratio_y
        self.is_train = is_train

    def transform(self, results: dict) -> dict:
        aug = np.eye(4, dtype=np.float32)
        if self.is_train:
            angle = np.random.uniform(*self.rot_range)
            scale = np.random.uniform(*self.scale_range)
            trans = np.random.normal(scale=self.trans_std, size=3).astype(np.float32) if self.trans_std.any() else \
                np.zeros(3, np.float32)
            c, s = np.cos(angle), np.sin(angle)
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
            aug[:3, :3] = scale * rot
            aug[:3, 3] = trans
            flip = np.eye(4, dtype=np.float32)
            if np.random.rand() < self.flip_ratio_x:
                flip[1, 1] = -1.0
            if np.random.rand() < self.flip_ratio_y:
                flip[0, 0] = -1.0
            aug = flip @ aug
            # mmdet3d points and boxes share this interface (row vectors: p @ R).
            for target in (results.get('points'), results.get('gt_bboxes_3d')):
                if target is None:
                    continue
                target.rotate(rot.T)
                target.scale(scale)
                target.translate(trans)
                if flip[1, 1] < 0:
                    target.flip('horizontal')
                if flip[0, 0] < 0:
                    target.flip('vertical')
        results['lidar_aug_matrix'] = aug @ results.get('lidar_aug_matrix', np.eye(4, dtype=np.float32))
        return results
