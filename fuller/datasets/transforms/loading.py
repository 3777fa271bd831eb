"""Loading transforms: multi-sweep LiDAR points and six-camera images, with checked I/O.

Every failure names the file: a missing or truncated ``.pcd.bin`` or a missing, truncated or
unreadable image raises :class:`DataFileError` instead of returning garbage.
"""

import os.path as osp

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.structures import LiDARPoints

from fuller.registry import TRANSFORMS

from ..metainfo import CAMERAS


class DataFileError(RuntimeError):
    """A data file is missing or corrupt. The message names the file."""


class ArrayCache:
    """Decoded inputs kept in this process's memory, up to ``max_mb`` MiB (each data-loader
    worker process has its own): what a loading transform read and prepared once, for the
    epochs after the first. Arrays are stored read-only and handed out as copies; once the
    budget is full, further arrays are not kept (the first ones stay: with shuffled epochs an
    evicting cache smaller than the data would only churn)."""

    def __init__(self, max_mb: float) -> None:
        if max_mb < 0:
            raise ValueError(f'cache_mb must be >= 0 (0: no cache), got {max_mb}')
        self.max_bytes = int(max_mb * 2**20)
        self.nbytes = 0
        self._arrays: dict = {}

    def __len__(self) -> int:
        return len(self._arrays)

    def get(self, key) -> np.ndarray | None:
        return self._arrays.get(key)

    def put(self, key, array: np.ndarray) -> np.ndarray:
        """Keep ``array`` under ``key`` if it fits the budget; returns it."""
        if self.nbytes + array.nbytes <= self.max_bytes:
            array.setflags(write=False)
            self._arrays[key] = array
            self.nbytes += array.nbytes
        return array


def _cached(cache: ArrayCache | None, key, make, *args) -> np.ndarray:
    """``make(*args)``, kept in ``cache`` under ``key`` (or taken from it); no cache: made."""
    if cache is None:
        return make(*args)
    found = cache.get(key)
    return found if found is not None else cache.put(key, make(*args))


def load_points_file(path: str, load_dim: int) -> np.ndarray:
    """Read a nuScenes ``.pcd.bin`` (float32 records of ``load_dim`` values).

    Raises:
        DataFileError: the file is missing, empty, truncated or holds non-finite values.
    """
    if not osp.isfile(path):
        raise DataFileError(f'point cloud file not found: {path}')
    size = osp.getsize(path)
    if size == 0:
        raise DataFileError(f'empty point cloud {path}: the file has 0 bytes, so the scan has no points (an '
                            'interrupted download or copy?); restore the file, or skip such samples with '
                            "dataset on_bad_sample='skip'")
    if size % (4 * load_dim):
        raise DataFileError(
            f'corrupt point cloud {path}: {size} bytes is not a whole number of '
            f'{load_dim}-float32 records ({4 * load_dim} bytes each; truncated file?)'
        )
    raw = np.fromfile(path, dtype=np.float32)
    pts = raw.reshape(-1, load_dim)
    if not np.isfinite(pts).all():
        raise DataFileError(f'corrupt point cloud {path}: contains NaN/Inf values')
    return pts


def load_image_file(path: str) -> np.ndarray:
    """Read an image as BGR uint8, refusing truncated files.

    libjpeg decodes a truncated JPEG into a partly grey image and only prints "Premature end
    of JPEG file", without the file's name; a JPEG must end with its end-of-image marker and
    a PNG with its IEND chunk.

    Raises:
        DataFileError: the file is missing, empty, truncated or undecodable.
    """
    if not osp.isfile(path):
        raise DataFileError(f'image file not found: {path}')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise DataFileError(f'corrupt image {path}: empty file')
    if data[:2] == b'\xff\xd8' and not data.rstrip(b'\x00').endswith(b'\xff\xd9'):
        raise DataFileError(f'corrupt image {path}: truncated JPEG ({len(data)} bytes, no end-of-image marker)')
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-12:]:
        raise DataFileError(f'corrupt image {path}: truncated PNG ({len(data)} bytes, no IEND chunk)')
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFileError(f'corrupt or unreadable image: {path}')
    return img


@TRANSFORMS.register_module()
class LoadMultiSweepPoints(BaseTransform):
    """Load the keyframe LiDAR points and up to ``sweeps`` previous sweeps.

    Sweep points are moved into the keyframe's LiDAR frame; the 5th channel becomes the time
    lag (s) to the keyframe, as in mmdet3d/BEVFusion.

    Args:
        sweeps: number of previous sweeps to add (0: keyframe only).
        load_dim: floats per point in the files.
        use_dim: channels kept, e.g. ``[0, 1, 2, 3, 4]``.
        remove_close: drop sweep points within this distance of the sensor (the car body), m.
        close_region: ``'disc'`` (within ``remove_close`` in the ground plane) or ``'square'``
            (|x| and |y| both below it: mmdet3d's and BEVFusion's ``_remove_close``).
        test_mode: with more sweeps in the info than ``sweeps``: ``False`` draws ``sweeps`` of
            them at random without replacement, ``True`` takes the nearest (mmdet3d's and
            BEVFusion's ``LoadPointsFromMultiSweeps``; fewer are all taken either way).
        pad_empty_sweeps: a keyframe without sweeps (a scene's first) gets ``sweeps`` copies of
            its own points (close points removed, time lag 0), as mmdet3d's and BEVFusion's
            ``pad_empty_sweeps``.
        cache_mb: keep each file's points, read and moved into the keyframe's frame, in
            memory up to this many MiB (:class:`ArrayCache`; 0: read every time). The same
            points either way; for a training set that fits in memory, read over many epochs.
    """

    def __init__(self, sweeps: int = 9, load_dim: int = 5, use_dim: tuple = (0, 1, 2, 3, 4),
                 remove_close: float = 1.0, close_region: str = 'disc', test_mode: bool = True,
                 pad_empty_sweeps: bool = False, cache_mb: float = 0) -> None:
        if close_region not in ('disc', 'square'):
            raise ValueError(f"LoadMultiSweepPoints: close_region must be 'disc' or 'square', not {close_region!r}")
        self.sweeps = sweeps
        self.load_dim = load_dim
        self.use_dim = list(use_dim)
        self.remove_close = remove_close
        self.close_region = close_region
        self.test_mode = test_mode
        self.pad_empty_sweeps = pad_empty_sweeps
        self.cache = ArrayCache(cache_mb) if cache_mb else None

    def _far(self, pts: np.ndarray) -> np.ndarray:
        if self.remove_close <= 0:
            return pts
        if self.close_region == 'square':
            return pts[~((np.abs(pts[:, 0]) < self.remove_close) & (np.abs(pts[:, 1]) < self.remove_close))]
        x, y = pts[:, 0], pts[:, 1]  # np.linalg.norm(pts[:, :2], axis=1)'s sum and root, a third of its time
        return pts[np.sqrt(x * x + y * y) >= self.remove_close]

    def _keyframe(self, path: str) -> np.ndarray:
        pts = load_points_file(path, self.load_dim)  # a fresh array
        pts[:, 4] = 0.0
        return pts

    def _sweep(self, sweep: dict, ts: float) -> np.ndarray:
        sp = self._far(load_points_file(sweep['lidar_points']['lidar_path'], self.load_dim))
        sp[:, :3] = sweep_to_keyframe(sp[:, :3], sweep['lidar_points'])
        sp[:, 4] = ts - sweep['timestamp']
        return sp

    def transform(self, results: dict) -> dict:
        path = results['lidar_points']['lidar_path']
        pts = _cached(self.cache, (path,), self._keyframe, path)
        clouds = [pts]
        ts = results['timestamp']
        sweeps = results.get('lidar_sweeps', [])
        if len(sweeps) > self.sweeps and not self.test_mode:
            sweeps = [sweeps[i] for i in np.random.choice(len(sweeps), self.sweeps, replace=False)]
        else:
            sweeps = sweeps[: self.sweeps]
        if self.pad_empty_sweeps and not sweeps:
            clouds += [self._far(pts)] * self.sweeps
        for sweep in sweeps:  # a sweep's points in this keyframe's frame: keyed by both files
            clouds.append(_cached(self.cache, (path, sweep['lidar_points']['lidar_path']), self._sweep, sweep, ts))
        pts = np.concatenate(clouds)  # a fresh array, never a cached one
        if self.use_dim != list(range(pts.shape[1])):
            pts = pts[:, self.use_dim]
        results['points'] = LiDARPoints(pts, points_dim=pts.shape[1], attribute_dims=dict(intensity=3))
        return results


def sweep_to_keyframe(xyz: np.ndarray, lidar_points: dict) -> np.ndarray:
    """A sweep's points ([N, 3], its LiDAR frame) in the keyframe's LiDAR frame, from the sweep's
    ``lidar2sensor`` ``[R | u]`` (keyframe frame -> sweep frame): ``(p - u) @ R``, the exact inverse,
    as BEVFusion's ``sensor2lidar`` transform gives. mmdet3d 1.x applies ``p @ R - u``
    (open-mmlab/mmdetection3d#3054), off by ``(R^T - I)`` times the sweep's offset when the ego turns.
    Sweeps without ``lidar2ego`` come from FULLER's info files before 2026-12-05, whose
    ``lidar2sensor`` held ``[R | -t]`` for exactly that formula: it stays exact for them."""
    m = np.asarray(lidar_points['lidar2sensor'], dtype=np.float32)
    if 'lidar2ego' in lidar_points:
        return (xyz - m[:3, 3]) @ m[:3, :3]
    return xyz @ m[:3, :3] - m[:3, 3]


def _load_rgb(path: str) -> np.ndarray:
    return cv2.cvtColor(load_image_file(path), cv2.COLOR_BGR2RGB)  # img[:, :, ::-1]'s values, 10x faster


@TRANSFORMS.register_module()
class LoadMultiViewImages(BaseTransform):
    """Load the six camera images (RGB; float32, or uint8 with ``to_float32=False``) and their geometry.

    Adds ``imgs`` (list of [H, W, 3] arrays, camera order of ``cameras``), ``cam2img``
    ([N, 4, 4]), ``lidar2cam`` ([N, 4, 4]) and an identity ``img_aug_matrix`` ([N, 4, 4]).

    Every camera's ``cam2img`` and ``lidar2cam`` must be finite, and an image must have the
    size its info states (``width`` x ``height``, the size ``cam2img`` was calibrated at):
    otherwise :class:`DataFileError` names the sample, the camera and the file (a NaN camera
    matrix would silently drop that camera; an image of another size would misplace its
    features).

    Args:
        cameras: camera channels to load, in order.
        on_size_mismatch: ``'error'`` (default) or ``'rescale'``: accept an image of another
            size than its info states and scale its intrinsics to it (focal lengths by the size
            ratio, the principal point with pixel centres at integers: ``(c + 0.5) * s - 0.5``).
        to_float32: images as float32 (0-255) or, with ``False``, as the uint8 pixels decoded
            (mmdet3d's ``LoadMultiViewImageFromFiles`` option): for a pipeline whose
            :class:`ImageAug3D` resamples with PIL, which works on uint8, so that a full-size image
            is not converted to float32 and back (the same output; BEVFusion's camera pipeline on
            a real nuScenes keyframe 1.5x faster).
        cache_mb: keep the decoded images in memory up to this many MiB (:class:`ArrayCache`;
            0: decode every time); the same pixels either way.
    """

    def __init__(self, cameras: tuple = CAMERAS, on_size_mismatch: str = 'error', to_float32: bool = True,
                 cache_mb: float = 0) -> None:
        if on_size_mismatch not in ('error', 'rescale'):
            raise ValueError(f"LoadMultiViewImages: on_size_mismatch must be 'error' or 'rescale', "
                             f'got {on_size_mismatch!r}')
        self.cameras = list(cameras)
        self.on_size_mismatch = on_size_mismatch
        self.to_float32 = to_float32
        self.cache = ArrayCache(cache_mb) if cache_mb else None

    def _intrinsics(self, info: dict, img: np.ndarray, cam: str, token: str) -> np.ndarray:
        k = np.eye(4, dtype=np.float32)
        k[:3, :3] = np.asarray(info['cam2img'], dtype=np.float32)
        h, w = img.shape[:2]
        want = (info.get('width'), info.get('height'))
        if None not in want and (w, h) != tuple(want):
            if self.on_size_mismatch == 'error':
                raise DataFileError(
                    f'sample {token}: {cam} image {info["img_path"]} is {w}x{h} but its info states '
                    f'{want[0]}x{want[1]} (the size cam2img was calibrated at); re-create the infos for these '
                    "images, or set LoadMultiViewImages(on_size_mismatch='rescale') to scale the intrinsics")
            sx, sy = w / want[0], h / want[1]
            k[0, 0], k[0, 1], k[1, 1] = k[0, 0] * sx, k[0, 1] * sx, k[1, 1] * sy
            k[0, 2], k[1, 2] = (k[0, 2] + 0.5) * sx - 0.5, (k[1, 2] + 0.5) * sy - 0.5
        return k

    def transform(self, results: dict) -> dict:
        imgs, cam2img, lidar2cam = [], [], []
        token = results.get('token', '?')
        for cam in self.cameras:
            info = results['images'].get(cam)
            if info is None:
                raise DataFileError(f'sample {token} has no {cam} image entry in its info')
            for key in ('cam2img', 'lidar2cam'):
                if not np.isfinite(np.asarray(info[key], dtype=np.float64)).all():
                    raise DataFileError(f'sample {token}: {cam} {key} in its info is not finite '
                                        f'({np.asarray(info[key]).tolist()}); fix or re-create the info file')
            rgb = _cached(self.cache, info['img_path'], _load_rgb, info['img_path'])
            # the cache's arrays are read-only: a copy of those, the fresh array otherwise
            imgs.append(rgb.astype(np.float32) if self.to_float32 else rgb if rgb.flags.writeable else rgb.copy())
            cam2img.append(self._intrinsics(info, rgb, cam, token))
            lidar2cam.append(np.asarray(info['lidar2cam'], dtype=np.float32))
        results['imgs'] = imgs
        results['cam2img'] = np.stack(cam2img)
        results['lidar2cam'] = np.stack(lidar2cam)
        results['img_aug_matrix'] = np.tile(np.eye(4, dtype=np.float32), (len(imgs), 1, 1))
        results['ori_img_shape'] = imgs[0].shape[:2]
        return results
