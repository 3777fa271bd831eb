"""Pretraining the demo model's camera backbone on labelled demo images.

BEVFusion's camera branch starts from a pretrained image backbone (Swin-T from ImageNet, or from
nuImages); a camera branch trained from scratch on the demo's 8 training scenes learns little in a
CPU budget. The demo world can label every pixel it renders, so the demo has its own nuImages:
:func:`render_labelled_images` renders camera images of **other maps** than the dataset's (the
worlds are built from another seed: nothing of the demo ``mini_val`` scenes is seen), each pixel
labelled sky, one of the 7 ground layers or one of the 10 object classes
(:data:`PIXEL_CLASSES`), and :func:`pretrain_camera` trains the camera backbone and neck of a
model config on them as a semantic segmentation (a 3x3 and a 1x1 conv on the neck's first level,
the one the view transform lifts; cross-entropy at full resolution). The images go through the
dataset's own train-time image augmentation (:class:`~fuller.datasets.transforms.ImageAug3D`'s
resize, bottom crop and flip) and the model's normalisation. The saved checkpoint holds
``backbone.*`` and ``neck.*`` and is loaded by ``init_cfg=dict(type='Pretrained', checkpoint=...,
prefix='backbone.')`` (``'neck.'``). ``tools/pretrain_demo_camera.py`` is the command line.
"""

import contextlib
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fuller.datasets.create_infos import pose_matrix
from fuller.datasets.metainfo import CAMERAS
from fuller.datasets.metainfo import CLASSES as DETECTION_CLASSES

from .generator import CAMERA_FULL_SIZE, LOCATIONS, _ego_route, camera_calibration
from .objects import DEFAULT_COUNTS, sample_agents
from .sensors import PIXEL_OBJECT, render_camera
from .world import build_world

__all__ = ['PIXEL_CLASSES', 'SegmentationProbe', 'augment', 'pixel_iou', 'pretrain_camera', 'render_labelled_images']

PIXEL_CLASSES = ('sky', 'grass', 'drivable_area', 'walkway', 'carpark_area', 'ped_crossing', 'stop_line', 'divider',
                 *DETECTION_CLASSES)
assert len(PIXEL_CLASSES) == PIXEL_OBJECT + len(DETECTION_CLASSES)


def _render_frame(seed: int, frame: int, image_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The six images and labels of frame ``frame``: a function of ``(seed, frame)`` alone."""
    worlds = _worlds(seed)
    rng = np.random.default_rng([seed, frame])
    world = worlds[rng.integers(len(worlds))]
    # A short stretch of route, so that objects are placed along it as in a scene.
    ego_xy, ego_yaw = _ego_route(world, rng, 8, 0.5)
    agents = sample_agents(world, rng, ego_xy, DEFAULT_COUNTS)
    k = int(rng.integers(len(ego_xy)))
    ego = pose_matrix([ego_xy[k, 0], ego_xy[k, 1], 0.0], [np.cos(ego_yaw[k] / 2), 0.0, 0.0, np.sin(ego_yaw[k] / 2)])
    w_img, h_img = (int(round(CAMERA_FULL_SIZE[0] * image_scale)), int(round(CAMERA_FULL_SIZE[1] * image_scale)))
    images, labels = [], []
    for channel in CAMERAS:
        trans, rot, intr = camera_calibration(channel, image_scale)
        img, _, _, lab = render_camera(world, agents, 0.0, ego @ pose_matrix(trans, rot), np.array(intr), w_img, h_img,
                                       rng, return_labels=True)
        images.append(img)
        labels.append(lab)
    return np.stack(images), np.stack(labels)


_WORLDS: dict[int, list] = {}


def _worlds(seed: int) -> list:
    """The four locations' worlds of ``seed`` (built once per process)."""
    if seed not in _WORLDS:
        rng = np.random.default_rng(seed)
        _WORLDS[seed] = [build_world(loc, rng) for loc in LOCATIONS]
    return _WORLDS[seed]


def render_labelled_images(frames: int, seed: int, image_scale: float = 0.2, first_frame: int = 0, workers: int = 1,
                           verbose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render ``frames`` x 6 camera images with per-pixel labels.

    The four map locations' worlds are built from ``seed`` (the demo dataset builds its worlds
    from its own seed, 0 by default: use another one). Each frame (numbered from
    ``first_frame``) places the ego on a random road of one of them, samples the dataset's
    objects around it and renders the six cameras of the demo rig at the dataset's resolution.
    Frame ``f`` is a function of ``(seed, f)`` alone, whatever ``workers`` (processes) render it.

    Returns:
        ``(images, labels)``: [frames * 6, H, W, 3] uint8 RGB and [frames * 6, H, W] uint8
        indices into :data:`PIXEL_CLASSES`.
    """
    t0 = time.time()
    jobs = [(seed, f, image_scale) for f in range(first_frame, first_frame + frames)]
    out = []
    with contextlib.ExitStack() as stack:
        if workers > 1:
            import multiprocessing as mp

            pool = stack.enter_context(mp.get_context('spawn').Pool(workers))
            frames_iter = pool.imap(_render_star, jobs, chunksize=4)
        else:
            frames_iter = map(_render_star, jobs)
        for i, r in enumerate(frames_iter):
            out.append(r)
            if verbose and (i + 1) % 50 == 0:
                print(f'[pretrain] rendered {i + 1}/{frames} frames ({time.time() - t0:.0f} s)', flush=True)
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def _render_star(job):
    return _render_frame(*job)


def augment(image: np.ndarray, label: np.ndarray, image_aug) -> tuple[np.ndarray, np.ndarray]:
    """One image and its labels through one draw of ``image_aug`` (an :class:`ImageAug3D`)'s
    resize, crop, flip and rotation: the image as the transform does it (bilinear), the labels
    alike with nearest neighbours (255 where the crop or rotation leaves the image: ignored)."""
    params = image_aug._params(*image.shape[:2])
    return image_aug.warp(image, params), image_aug.warp(label, params, cv2.INTER_NEAREST, 255, np.uint8)


class SegmentationProbe(nn.Module):
    """Backbone -> neck -> per-pixel classes from the neck's first level (3x3 conv, BN, ReLU,
    1x1 conv), upsampled bilinearly to the input size."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.neck(self.backbone(x))
        f = feats[0] if isinstance(feats, (list, tuple)) else feats
        return F.interpolate(self.head(f), size=x.shape[-2:], mode='bilinear', align_corners=False)


def pixel_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class IoU over all pixels (255 in ``target`` ignored); NaN for a class absent from both."""
    valid = target != 255
    p, t = pred[valid].astype(np.int64), target[valid].astype(np.int64)
    inter = np.bincount(t[p == t], minlength=num_classes)
    union = np.bincount(p, minlength=num_classes) + np.bincount(t, minlength=num_classes) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def _batch(images, labels, idx, image_aug, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [augment(images[i], labels[i], image_aug) for i in idx]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    return (x - mean) / std, y


def pretrain_camera(probe: SegmentationProbe, images: np.ndarray, labels: np.ndarray, image_aug, test_aug,
                    mean, std, iters: int, batch_size: int, lr: float, held_out: tuple[np.ndarray, np.ndarray],
                    log_interval: int = 50, log=print) -> dict:
    """Train ``probe`` on ``(images, labels)`` and score it on ``held_out``.

    AdamW (``lr``, weight decay 0.01) with a linear warm-up over the first 5% and cosine decay,
    cross-entropy over the labelled pixels; ``image_aug``/``test_aug``: the dataset's train and
    test :class:`ImageAug3D`; ``mean``/``std``: the model's RGB normalisation (0-255 scale).

    Returns:
        ``{'loss': [per iteration], 'iou': {class: IoU on held_out}, 'miou', 'pixel_acc'}``.
    """
    mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, iters // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / warm if i < warm else 0.5 * (1 + np.cos(np.pi * (i - warm) / max(1, iters - warm))))
    probe.train()
    losses, t0 = [], time.time()
    for it in range(iters):
        idx = np.random.randint(0, len(images), batch_size)
        x, y = _batch(images, labels, idx, image_aug, mean, std)
        loss = F.cross_entropy(probe(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_interval and ((it + 1) % log_interval == 0 or it + 1 == iters):
            log(f'[pretrain] iter {it + 1}/{iters}  loss {np.mean(losses[-log_interval:]):.4f}  '
                f'lr {sched.get_last_lr()[0]:.2e}  {time.time() - t0:.0f} s')
    probe.eval()
    k = len(PIXEL_CLASSES)
    with torch.no_grad():
        preds, targets = [], []
        for s in range(0, len(held_out[0]), batch_size):
            x, y = _batch(*held_out, range(s, min(s + batch_size, len(held_out[0]))), test_aug, mean, std)
            preds.append(probe(x).argmax(1).numpy())
            targets.append(y.numpy())
        pred, target = np.concatenate(preds), np.concatenate(targets)
    iou = pixel_iou(pred, target, k)
    valid = target != 255
    return {'loss': losses, 'iou': {c: (None if np.isnan(v) else float(v)) for c, v in zip(PIXEL_CLASSES, iou)},
            'miou': float(np.nanmean(iou)), 'pixel_acc': float((pred[valid] == target[valid]).mean())}
