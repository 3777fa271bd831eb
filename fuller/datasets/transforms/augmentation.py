"""Image and BEV augmentations that keep camera geometry, boxes and the map consistent."""

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from fuller.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ImageAug3D(BaseTransform):
    """Resize, crop, flip and rotate every camera image; record it in ``img_aug_matrix``.

    BEVFusion's ImageAug3D: the image is resized by a factor drawn from ``resize_lim`` (its mean
    when ``is_train`` is False) to ``int(W * r) x int(H * r)``, cropped to ``final_dim`` (H, W)
    from the bottom (the top is mostly sky), optionally flipped horizontally and rotated by an
    angle drawn from ``rot_lim`` (degrees, counter-clockwise on screen, about the crop's centre).

    ``img_aug_matrix`` maps original pixel coordinates to augmented ones exactly, in the
    convention of the intrinsics and OpenCV (pixel centres at integers): the resize is the
    rounded size over the original size per axis with OpenCV's half-pixel centres,
    ``(x + 0.5) * s - 0.5``; the flip is ``x -> fw - 1 - x`` (``canvas[:, ::-1]``); the rotation
    is the affine map the image is warped with.

    The pixels are resampled by ``backend``: ``'cv2'`` resizes and rotates with OpenCV's bilinear
    interpolation (no antialiasing when shrinking); ``'pillow'`` is BEVFusion's resampling exactly
    (its ``img_transform`` on PIL images: ``resize`` with PIL's default bicubic filter, whose
    support widens with the shrink factor, so it antialiases; ``crop``; ``transpose``; ``rotate``
    with PIL's default nearest neighbour), on the image as uint8 RGB as BEVFusion loads it. Both
    move every pixel by the same ``img_aug_matrix``.

    Args:
        final_dim: output (H, W).
        resize_lim: (min, max) resize factor.
        bot_pct_lim: (min, max) fraction of the resized height cut from the bottom.
        rand_flip: flip horizontally with probability 0.5 in training.
        rot_lim: (min, max) rotation in degrees in training (BEVFusion: (-5.4, 5.4)).
        is_train: random (train) or deterministic (test) parameters.
        backend: ``'cv2'`` or ``'pillow'`` (BEVFusion's), the resampling of the pixels.
    """

    BACKENDS = ('cv2', 'pillow')

    def __init__(self, final_dim: tuple, resize_lim: tuple, bot_pct_lim: tuple = (0.0, 0.0),
                 rand_flip: bool = False, rot_lim: tuple = (0.0, 0.0), is_train: bool = False,
                 backend: str = 'cv2') -> None:
        if backend not in self.BACKENDS:
            raise ValueError(f'ImageAug3D.backend must be one of {self.BACKENDS}, got {backend!r}')
        self.backend = backend
        self.final_dim = tuple(final_dim)
        self.resize_lim = tuple(resize_lim)
        self.bot_pct_lim = tuple(bot_pct_lim)
        self.rand_flip = rand_flip
        self.rot_lim = tuple(rot_lim)
        self.is_train = is_train

    def _params(self, h: int, w: int):
        fh, fw = self.final_dim
        if self.is_train:
            resize = np.random.uniform(*self.resize_lim)
            bot = np.random.uniform(*self.bot_pct_lim)
            flip = self.rand_flip and np.random.rand() < 0.5
            angle = float(np.random.uniform(*self.rot_lim)) if self.rot_lim != (0.0, 0.0) else 0.0
        else:
            resize = float(np.mean(self.resize_lim))
            bot = float(np.mean(self.bot_pct_lim))
            flip, angle = False, 0.0
        nh, nw = int(h * resize), int(w * resize)
        top = int((1 - bot) * nh) - fh
        left = int(np.random.uniform(0, max(0, nw - fw))) if self.is_train else int(max(0, nw - fw) / 2)
        return (nw, nh), (left, top), flip, angle

    def _matrix(self, h: int, w: int, nw: int, nh: int, left: int, top: int, flip: bool, angle: float):
        """The 3x3 pixel map original -> augmented, and its rotation part alone."""
        fh, fw = self.final_dim
        sx, sy = nw / w, nh / h
        m = np.array([[sx, 0.0, 0.5 * sx - 0.5 - left], [0.0, sy, 0.5 * sy - 0.5 - top], [0.0, 0.0, 1.0]])
        if flip:
            m = np.array([[-1.0, 0.0, fw - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
        rot = np.eye(3)
        if angle:
            t = np.deg2rad(angle)
            c, s = np.cos(t), np.sin(t)
            cx, cy = (fw - 1) / 2, (fh - 1) / 2
            rot = np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy], [0.0, 0.0, 1.0]])
        return rot @ m, rot

    def warp(self, image: np.ndarray, params, interpolation: int = cv2.INTER_LINEAR, fill: float = 0,
             dtype=np.float32) -> np.ndarray:
        """``image`` ([H, W] or [H, W, C]) through the resize, crop, flip and rotation of ``params``
        (from :meth:`_params`): what :meth:`transform` does to each camera image, and what any
        per-pixel map of the image needs to stay on its pixels (labels: nearest neighbours, with
        ``fill`` where the crop or the rotation leaves the image)."""
        fh, fw = self.final_dim
        h, w = image.shape[:2]
        (nw, nh), (left, top), flip, angle = params
        resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
        canvas = np.full((fh, fw) + image.shape[2:], fill, dtype)
        y0, x0 = max(top, 0), max(left, 0)
        crop = resized[y0: top + fh, x0: left + fw]
        canvas[y0 - top: y0 - top + crop.shape[0], x0 - left: x0 - left + crop.shape[1]] = crop
        if flip:
            canvas = canvas[:, ::-1].copy()
        if angle:
            rot = self._matrix(h, w, nw, nh, left, top, flip, angle)[1]
            canvas = cv2.warpAffine(canvas, rot[:2].astype(np.float64), (fw, fh), flags=interpolation,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
        return canvas

    def warp_pillow(self, image: np.ndarray, params) -> np.ndarray:
        """``image`` ([H, W, 3], RGB 0-255, cast to uint8 as BEVFusion's images are) through the
        same operations as :meth:`warp`, resampled as BEVFusion's ``ImageAug3D.img_transform`` does
        with PIL. Returns float32."""
        from PIL import Image

        fh, fw = self.final_dim
        (nw, nh), (left, top), flip, angle = params
        im = Image.fromarray(image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC).crop((left, top, left + fw, top + fh))
        if flip:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if angle:
            im = im.rotate(angle, resample=Image.Resampling.NEAREST)
        return np.asarray(im, dtype=np.float32)

    def transform(self, results: dict) -> dict:
        out, mats = [], []
        for img, prev in zip(results['imgs'], results['img_aug_matrix']):
            h, w = img.shape[:2]
            params = self._params(h, w)
            (nw, nh), (left, top), flip, angle = params
            m3 = self._matrix(h, w, nw, nh, left, top, flip, angle)[0]
            m = np.eye(4)
            m[:2, :2], m[:2, 3] = m3[:2, :2], m3[:2, 2]
            if self.backend == 'cv2' and img.dtype != np.float32:  # resampled in float32 whatever was loaded
                img = img.astype(np.float32)
            out.append(self.warp_pillow(img, params) if self.backend == 'pillow' else self.warp(img, params))
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
        trans_std: std of the translation per axis, m. As in BEVFusion's GlobalRotScaleTrans the
            translation is applied before the scale, so the points move by ``scale * t``.
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
            aug[:3, 3] = scale * trans
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
                target.translate(trans)
                target.scale(scale)
                if flip[1, 1] < 0:
                    target.flip('horizontal')
                if flip[0, 0] < 0:
                    target.flip('vertical')
        results['lidar_aug_matrix'] = aug @ results.get('lidar_aug_matrix', np.eye(4, dtype=np.float32))
        return results
