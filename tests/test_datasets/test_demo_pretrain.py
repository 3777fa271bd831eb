"""The demo's labelled camera images and the camera pretraining stage (fuller.demo.pretrain,
tools/pretrain_demo_camera.py)."""

import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from fuller.datasets.transforms import ImageAug3D
from fuller.demo.objects import CLASSES
from fuller.demo.pretrain import PIXEL_CLASSES, augment, pixel_iou, render_labelled_images
from fuller.demo.sensors import PIXEL_GROUND, PIXEL_OBJECT, PIXEL_SKY, SKY_RGB, render_camera
from fuller.demo.world import build_world
from fuller.utils.cli import REPO_ROOT


def _looking_down(xy, height=6.0):
    """A camera above ``xy`` looking straight down (camera frame: x right, y down, z forward)."""
    cam = np.eye(4)
    cam[:3, :3] = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    cam[:3, 3] = [xy[0], xy[1], height]
    return cam


def test_labels_name_what_each_pixel_sees_and_leave_the_image_unchanged():
    world = build_world('boston-seaport', np.random.default_rng(0))
    k = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    road = world.roads[0]  # above its edge: the camera sees the road and the walkway
    edge = road.center + road.half_width
    xy = np.array([200.0, edge]) if road.axis == 0 else np.array([edge, 200.0])
    cam = _looking_down(xy)
    img, vis, tot = render_camera(world, [], 0.0, cam, k, 80, 60, np.random.default_rng(1))
    img2, vis2, tot2, lab = render_camera(world, [], 0.0, cam, k, 80, 60, np.random.default_rng(1), return_labels=True)
    np.testing.assert_array_equal(img, img2)  # the labels draw nothing from the generator
    # Every pixel sees the ground straight below: its label is the world's label there (the
    # pixel centre's ray meets z = 0, or the kerb top of a walkway, at offset (u - cx) / f * height).
    u, v = np.meshgrid(np.arange(80) + 0.5, np.arange(60) + 0.5)
    ground_xy = np.stack([xy[0] + (u - 40) / 100 * 6.0, xy[1] - (v - 30) / 100 * 6.0], -1)
    expected = PIXEL_GROUND + world.label_at(ground_xy.reshape(-1, 2)).reshape(60, 80)
    assert (lab == expected).mean() > 0.97  # walkway kerbs shift a few boundary pixels
    assert len(np.unique(lab)) >= 2, np.unique(lab)


def test_object_and_sky_pixels_are_labelled_by_class():
    from fuller.demo.objects import Agent

    world = build_world('boston-seaport', np.random.default_rng(0))
    agents = [Agent('bus', np.array([110.0, 100.0, 1.75]), np.array([2.9, 11.0, 3.5]), 0.0, np.zeros(2), ''),
              Agent('pedestrian', np.array([110.0, 97.0, 0.9]), np.array([0.7, 0.7, 1.75]), 0.0, np.zeros(2), '')]
    cam = np.eye(4)  # at (100, 99, 1.5) looking along +x
    cam[:3, :3] = np.stack([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], 1)
    cam[:3, 3] = [100.0, 99.0, 1.5]
    k = np.array([[150.0, 0, 160], [0, 150.0, 90], [0, 0, 1]])
    img, vis, _, lab = render_camera(world, agents, 0.0, cam, k, 320, 180, np.random.default_rng(0),
                                     return_labels=True)
    names = list(CLASSES)
    for i, a in enumerate(agents):
        assert vis[i] > 50
        assert (lab == PIXEL_OBJECT + names.index(a.name)).sum() == vis[i]
    sky = lab == PIXEL_SKY
    assert sky[:20].mean() > 0.9 and not sky[-20:].any()
    assert np.abs(img[sky].astype(float) - SKY_RGB).max() < 20  # the sky colour plus noise
    assert PIXEL_CLASSES[PIXEL_OBJECT + names.index('bus')] == 'bus'


def test_augment_keeps_labels_on_their_pixels():
    """The labels go through the dataset's resize, bottom crop, flip and rotation with the image: an image
    painted by its labels stays painted by them (bilinear edges aside); the canvas outside the
    resized image is ignored (255)."""
    rng = np.random.default_rng(0)
    lab = np.repeat(np.repeat(rng.integers(0, 18, (9, 16)), 20, 0), 20, 1).astype(np.uint8)  # 180 x 320 blocks
    img = np.repeat(lab[..., None] * 10.0, 3, -1).astype(np.uint8)
    aug = ImageAug3D(final_dim=(96, 256), resize_lim=(0.73, 0.87), bot_pct_lim=(0.0, 0.1), rand_flip=True,
                     is_train=True)
    np.random.seed(3)
    for _ in range(6):
        out_img, out_lab = augment(img, lab, aug)
        assert out_img.shape == (96, 256, 3) and out_lab.shape == (96, 256)
        valid = out_lab != 255
        assert valid.mean() > 0.9
        assert (np.abs(out_img[..., 0][valid] - 10.0 * out_lab[valid]) < 1).mean() > 0.85
    # BEVFusion's rotation too: the labels turn with the image; the corners it leaves are ignored.
    rot = ImageAug3D(final_dim=(96, 256), resize_lim=(0.8, 0.8), rot_lim=(5.0, 5.4), is_train=True)
    out_img, out_lab = augment(img, lab, rot)
    valid = out_lab != 255
    assert 0.8 < valid.mean() < 0.99 and not valid[0, 0] and not valid[-1, -1]
    assert (np.abs(out_img[..., 0][valid] - 10.0 * out_lab[valid]) < 1).mean() > 0.8
    big = ImageAug3D(final_dim=(200, 256), resize_lim=(0.8, 0.8), bot_pct_lim=(0.0, 0.0), is_train=False)
    out_img, out_lab = augment(img, lab, big)  # 144 rows of image in a 200-row canvas
    assert (out_lab[:56] == 255).all() and (out_lab[56:] != 255).all() and (out_img[:56] == 0).all()


def test_pixel_iou_by_hand():
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    target = np.array([[0, 1, 1], [1, 2, 255]])
    iou = pixel_iou(pred, target, 4)
    np.testing.assert_allclose(iou[:3], [1 / 2, 2 / 3, 1 / 1])
    assert np.isnan(iou[3])


def test_labelled_images_come_from_other_worlds_than_the_dataset():
    """Seed 1000 builds other maps than the demo dataset's seed 0, and the render is a function
    of the seed."""
    a_img, a_lab = render_labelled_images(1, 1000)
    b_img, b_lab = render_labelled_images(1, 1000)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert a_img.shape == (6, 180, 320, 3) and a_lab.max() < len(PIXEL_CLASSES)
    w0, w1 = build_world('boston-seaport', np.random.default_rng(0)), build_world('boston-seaport',
                                                                                   np.random.default_rng(1000))
    assert not np.array_equal(w0.raster, w1.raster)


@pytest.mark.slow
def test_pretrain_tool_learns_and_its_weights_load_into_the_demo_model(tmp_path):
    """The tool's checkpoint learns the segmentation (held-out pixel accuracy far above the
    majority class), and the demo model's camera backbone and neck load every tensor of it
    through their ``Pretrained`` init_cfg with the documented prefixes."""
    out = str(tmp_path / 'cam.pth')
    subprocess.run([sys.executable, 'tools/pretrain_demo_camera.py', '--frames', '3', '--held-out-frames', '1',
                    '--workers', '1', '--iters', '40', '--batch-size', '4', '--lr', '3e-3', '--out', out],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
    ckpt = torch.load(out, map_location='cpu', weights_only=True)
    meta = ckpt['meta']
    assert meta['classes'] == list(PIXEL_CLASSES) and meta['image_size'] == [96, 256]
    curve = json.loads((tmp_path / 'cam.json').read_text())['loss']
    assert len(curve) == 40 and np.mean(curve[-5:]) < 0.6 * np.mean(curve[:5])
    assert meta['held_out']['pixel_acc'] > 0.5  # the sky alone is about 0.4 of the pixels

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from fuller.engine import resolve_config
    from fuller.models.init import report_pretrained
    from fuller.registry import MODELS

    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'))
    cam = cfg.model.encoders.camera
    cam.backbone.init_cfg = dict(type='Pretrained', checkpoint=out, prefix='backbone.')
    cam.neck.init_cfg = dict(type='Pretrained', checkpoint=out, prefix='neck.')
    cfg = resolve_config(cfg)
    init_default_scope('fuller')
    model = MODELS.build(cfg.model)
    model.init_weights()
    reports = report_pretrained(model)
    by_key = {r['key']: r for r in reports}
    for part in ('backbone', 'neck'):
        rep = by_key[f'model.encoders.camera.{part}']
        own = getattr(model.encoders.camera, part).state_dict()
        assert len(rep['matched']) == len(own) and not rep['missing'] and not rep['unexpected']
        for k, v in own.items():
            assert torch.equal(v, ckpt['state_dict'][f'{part}.{k}'])
