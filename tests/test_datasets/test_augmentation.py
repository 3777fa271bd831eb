"""The augmentations' matrices describe the augmented data exactly.

ImageAug3D: bright dots are drawn at known sub-pixel positions of a full-size nuScenes image
(1600 x 900), the image is augmented, and each dot is found again in the augmented image by its
intensity centroid; ``img_aug_matrix`` applied to the original position must land on it to
< 0.05 px (issue 27 asks for < 0.05 px; the sampled-resize matrix without OpenCV's half-pixel
centres was off by up to 0.97 px, its flip by 1.25 px).
"""

import cv2
import numpy as np
import pytest
import torch
from mmdet3d.structures import LiDARInstance3DBoxes, LiDARPoints

from fuller.datasets.transforms import BEVAugmentation, ImageAug3D

H, W = 900, 1600
SIGMA = 5.0  # px in the original image; about 2.5 px after BEVFusion's 0.38-0.55 resize


def _dots(rng, step=80):
    # A jittered grid: dots about 35 px apart after the resize, at sub-pixel positions.
    gy, gx = np.mgrid[60:H - 59:step, 60:W - 59:step]
    pts = np.c_[gx.ravel(), gy.ravel()] + rng.uniform(-10, 10, (gx.size, 2))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W), np.float32)
    for x, y in pts:
        x0, y0 = int(x), int(y)
        sl = np.s_[max(y0 - 25, 0): y0 + 25, max(x0 - 25, 0): x0 + 25]
        img[sl] += np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * SIGMA ** 2))
    return pts, np.repeat(img[..., None] * 200.0, 3, axis=2)


def _centroid(img, x, y, r=9):
    x0, y0 = int(round(x)), int(round(y))
    patch = img[y0 - r: y0 + r + 1, x0 - r: x0 + r + 1, 0].astype(np.float64)
    yy, xx = np.mgrid[y0 - r: y0 + r + 1, x0 - r: x0 + r + 1]
    return (patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()


def _augment(aug, img, seed=0):
    """The augmented image, its matrix, and the same augmentation of an all-ones image (1 where the
    augmented pixel comes from inside the original image, 0 in padding and rotated-in corners)."""
    outs = []
    for im in (img, np.ones_like(img)):
        np.random.seed(seed)
        out = aug.transform({'imgs': [im], 'img_aug_matrix': np.eye(4, dtype=np.float32)[None]})
        outs.append(out)
    return outs[0]['imgs'][0], outs[0]['img_aug_matrix'][0].astype(np.float64), outs[1]['imgs'][0][..., 0]


def _max_error(pts, img, mat, cover, r=9):
    errs = []
    for x, y in pts:
        u, v = (mat @ np.array([x, y, 0.0, 1.0]))[:2]
        ui, vi = int(round(u)), int(round(v))
        # Only dots whose whole window comes from inside the original image can be located by
        # their centroid (not those cut by the crop or by the corners a rotation brings in).
        if not (r + 2 <= ui < cover.shape[1] - r - 2 and r + 2 <= vi < cover.shape[0] - r - 2):
            continue
        if cover[vi - r - 2: vi + r + 3, ui - r - 2: ui + r + 3].min() < 0.999:
            continue
        cu, cv = _centroid(img, u, v, r)
        errs.append(np.hypot(cu - u, cv - v))
    assert len(errs) >= 30, 'too few dots inside the crop to test'
    return max(errs)


@pytest.mark.parametrize('seed', range(6))
def test_image_matrix_is_exact_under_resize_crop_flip_and_rotation(seed):
    """BEVFusion's training ranges (configs/nuscenes/default.yaml augment2d: resize 0.38-0.55,
    rotate +-5.4 deg, rand_flip), 256 x 704 crop."""
    pts, img = _dots(np.random.default_rng(seed))
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.38, 0.55), rot_lim=(-5.4, 5.4), rand_flip=True,
                     is_train=True)
    out, mat, cover = _augment(aug, img, seed)
    assert out.shape == (256, 704, 3)
    assert _max_error(pts, out, mat, cover) < 0.05


@pytest.mark.parametrize('flip, angle', [(False, 0.0), (True, 0.0), (False, 5.0), (True, -5.4)])
def test_image_matrix_each_operation(flip, angle, monkeypatch):
    rng = np.random.default_rng(7)
    pts, img = _dots(rng)
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.48, 0.48), is_train=False)
    # The test-time parameters (resize 0.48, centred bottom crop) with the flip and angle forced.
    params = aug._params

    def forced(h, w):
        size, corner, _, _ = params(h, w)
        return size, corner, flip, angle

    monkeypatch.setattr(aug, '_params', forced)
    out, mat, cover = _augment(aug, img)
    assert _max_error(pts, out, mat, cover) < 0.05


def test_image_rotation_turns_counter_clockwise_on_screen():
    """A positive angle turns the image counter-clockwise as seen on screen, about the crop's
    centre (PIL's rotate, which BEVFusion uses): a point right of the centre moves up."""
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.5, 0.5), rot_lim=(10.0, 10.0), is_train=True)
    _, mat, _ = _augment(aug, np.zeros((H, W, 3), np.float32))
    t = np.deg2rad(10.0)
    np.testing.assert_allclose(mat[:2, :2], 0.5 * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]),
                               atol=1e-6)
    centre = np.linalg.solve(mat[:2, :2], np.array([351.5, 127.5]) - mat[:2, 3])  # original pixel
    right = mat[:2, :2] @ (centre + [200.0, 0.0]) + mat[:2, 3]
    assert right[1] < 127.5 - 15


def bevfusion_img_transform(img: np.ndarray, resize_dims: tuple, crop: tuple, flip: bool, rotate: float) -> np.ndarray:
    """The pixel operations of BEVFusion's ImageAug3D.img_transform (mit-han-lab/bevfusion,
    mmdet3d/datasets/pipelines/transforms_3d.py) on a PIL image, as it loads them (uint8 RGB):
    ``img.resize(resize_dims)``, ``img.crop(crop)``, ``img.transpose(FLIP_LEFT_RIGHT)`` if flipped,
    ``img.rotate(rotate)``; each with PIL's default filter."""
    from PIL import Image

    im = Image.fromarray(img).resize(resize_dims).crop(crop)
    if flip:
        im = im.transpose(method=Image.FLIP_LEFT_RIGHT)
    return np.asarray(im.rotate(rotate), dtype=np.float32)


@pytest.mark.parametrize('seed', range(4))
def test_pillow_backend_resamples_as_bevfusion(seed):
    """``backend='pillow'``: the pixels BEVFusion's img_transform makes from the same parameters
    (resize, bottom crop, flip, rotation), to the last bit. The OpenCV path differs: bilinear
    without antialiasing when it shrinks."""
    rng = np.random.default_rng(seed)
    # noise smoothed to a camera-like spectrum (raw noise would differ only by aliasing)
    img = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (0, 0), 1.5)
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.38, 0.55), rot_lim=(-5.4, 5.4), rand_flip=True,
                     is_train=True, backend='pillow')
    np.random.seed(seed)
    (nw, nh), (left, top), flip, angle = params = aug._params(H, W)
    want = bevfusion_img_transform(img, (nw, nh), (left, top, left + 704, top + 256), flip, angle)
    np.testing.assert_array_equal(aug.warp_pillow(img.astype(np.float32), params), want)
    np.random.seed(seed)
    out = aug.transform({'imgs': [img.astype(np.float32)], 'img_aug_matrix': np.eye(4, dtype=np.float32)[None]})
    np.testing.assert_array_equal(out['imgs'][0], want)
    cv = ImageAug3D(final_dim=(256, 704), resize_lim=(0.38, 0.55), is_train=True).warp(img.astype(np.float32), params)
    assert np.abs(cv - want).mean() > 1.0


@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
def test_images_loaded_as_uint8_augment_as_float32_ones(tmp_path, backend):
    """``LoadMultiViewImages(to_float32=False)`` (the nuScenes pipelines: PIL resamples uint8)
    hands ImageAug3D the decoded uint8 pixels: the augmented float32 images equal those from
    float32 loading to the bit, with either backend (OpenCV resamples in float32 either way)."""
    from fuller.datasets.transforms import LoadMultiViewImages

    rng = np.random.default_rng(0)
    path = tmp_path / 'cam.png'
    cv2.imwrite(str(path), cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (0, 0), 1.5))
    info = {'token': 't', 'images': {'CAM_FRONT': {'img_path': str(path), 'cam2img': np.eye(3).tolist(),
                                                   'lidar2cam': np.eye(4).tolist()}}}
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.38, 0.55), rot_lim=(-5.4, 5.4), rand_flip=True,
                     is_train=True, backend=backend)
    outs = []
    for to_float32 in (True, False):
        loaded = LoadMultiViewImages(cameras=('CAM_FRONT',), to_float32=to_float32).transform(dict(info))
        assert loaded['imgs'][0].dtype == (np.float32 if to_float32 else np.uint8)
        np.random.seed(3)
        outs.append(aug.transform(loaded)['imgs'][0])
    assert outs[1].dtype == np.float32
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize('seed', range(3))
def test_image_matrix_holds_for_the_pillow_backend(seed):
    """The same matrix moves BEVFusion's pixels: exactly (< 0.05 px) through the bicubic resize,
    crop and flip; within nearest-neighbour sampling (< 0.75 px) through PIL's nearest rotation."""
    pts, img = _dots(np.random.default_rng(seed))
    for rot_lim, bound in (((0.0, 0.0), 0.05), ((-5.4, 5.4), 0.75)):
        aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.38, 0.55), rot_lim=rot_lim, rand_flip=True,
                         is_train=True, backend='pillow')
        out, mat, cover = _augment(aug, img, seed)
        assert _max_error(pts, out, mat, cover) < bound


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be one of .*'pillow'.* got 'pil'"):
        ImageAug3D(final_dim=(256, 704), resize_lim=(0.48, 0.48), backend='pil')


def test_test_time_resize_is_bevfusions_integer_size():
    """BEVFusion: resize_dims = (int(W * r), int(H * r)); at r = 0.48 a 1600 x 900 image is 768 x 432,
    cropped from the bottom to 256 and centred to 704: left 32, top 176."""
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.48, 0.48), is_train=False)
    size, corner, flip, angle = aug._params(H, W)
    assert size == (768, 432) and corner == (32, 176) and not flip and angle == 0.0


def test_bev_translation_is_scaled_with_the_scale():
    """BEVFusion's GlobalRotScaleTrans translates the points, then scales them: the matrix's
    translation is scale * t, and the points follow the matrix."""
    np.random.seed(3)
    pts = np.random.default_rng(0).uniform(-30, 30, (50, 4)).astype(np.float32)
    aug = BEVAugmentation(rot_range=(0.2, 0.2), scale_range=(1.1, 1.1), trans_std=(0.5, 0.5, 0.5),
                          flip_ratio_x=0.0, flip_ratio_y=0.0)
    out = aug.transform({'points': LiDARPoints(torch.from_numpy(pts.copy()), points_dim=4)})
    m = out['lidar_aug_matrix'].astype(np.float64)
    want = (m[:3, :3] @ pts[:, :3].T.astype(np.float64)).T + m[:3, 3]
    np.testing.assert_allclose(out['points'].tensor[:, :3].numpy(), want, atol=1e-4)
    np.random.seed(3)
    np.random.uniform(0.2, 0.2), np.random.uniform(1.1, 1.1)
    t = np.random.normal(scale=[0.5, 0.5, 0.5], size=3)
    np.testing.assert_allclose(m[:3, 3], 1.1 * t, rtol=1e-5)
    boxes = LiDARInstance3DBoxes(torch.tensor([[10.0, 5.0, -1.0, 4.0, 2.0, 1.5, 0.3]]))
    np.random.seed(3)
    got = aug.transform({'gt_bboxes_3d': boxes})['gt_bboxes_3d'].tensor[0, :3].numpy()
    np.testing.assert_allclose(got, m[:3, :3] @ [10.0, 5.0, -1.0] + m[:3, 3], atol=1e-4)
