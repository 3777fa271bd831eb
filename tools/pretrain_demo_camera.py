"""Pretrain the demo model's camera backbone and neck on labelled demo images.

The demo's counterpart of the pretrained image backbones BEVFusion starts from (ImageNet,
nuImages): images of other maps than the demo dataset's, every pixel labelled (sky, the ground
layers, the object classes), learned as a segmentation. See :mod:`fuller.demo.pretrain`.

Example:
    python tools/pretrain_demo_camera.py                     # -> pretrained/demo-camera_r18-tiny_seg.pth
    python tools/pretrain_demo_camera.py --frames 40 --iters 100 --out /tmp/cam.pth   # a quick one
"""

import argparse
import logging
import os
import os.path as osp
import time
from contextlib import contextmanager

from fuller.utils import quiet_third_party_warnings

quiet_third_party_warnings()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

from fuller.datasets.transforms import ImageAug3D  # noqa: E402
from fuller.demo.pretrain import PIXEL_CLASSES, SegmentationProbe, pretrain_camera, render_labelled_images  # noqa: E402
from fuller.engine import base_dataset, load_config  # noqa: E402
from fuller.registry import MODELS  # noqa: E402
from fuller.utils.io import write_json_atomic  # noqa: E402


@contextmanager
def quiet_logger():
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


DEFAULT_CONFIG = 'configs/fuller/naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'
DEFAULT_OUT = 'pretrained/demo-camera_r18-tiny_seg.pth'


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Pretrain the demo camera backbone and neck on labelled demo images')
    p.add_argument('--config', default=DEFAULT_CONFIG,
                   help='model config whose camera backbone and neck are pretrained (and whose train pipeline '
                        'and normalisation the images go through)')
    p.add_argument('--out', default=DEFAULT_OUT, help='checkpoint to write (backbone.* and neck.*)')
    p.add_argument('--frames', type=int, default=200, help='training frames to render (6 images each)')
    p.add_argument('--held-out-frames', type=int, default=10, help='frames rendered for the held-out score')
    p.add_argument('--iters', type=int, default=600)
    p.add_argument('--batch-size', type=int, default=12)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--seed', type=int, default=1000,
                   help="seed of the worlds and of training (the demo dataset's worlds use its own seed, 0 by "
                        'default: keep them different so that no dataset map is seen)')
    p.add_argument('--workers', type=int, default=None,
                   help='processes rendering the images (default: the number of CPUs, at most 8)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch decides)')
    return p.parse_args()


def _find(pipeline: list, type_name: str) -> dict:
    for t in pipeline:
        if t.get('type') == type_name:
            return dict(t)
    raise SystemExit(f'pretrain_demo_camera: the config\'s pipeline has no {type_name}')


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, tool='pretrain_demo_camera')
    cam = cfg.model.encoders.get('camera')
    if cam is None:
        raise SystemExit(f'pretrain_demo_camera: {args.config} has no camera encoder (model.encoders.camera)')
    size = tuple(cfg.geometry.image_size)
    train_aug = _find(base_dataset(cfg.train_dataloader.dataset).pipeline, 'ImageAug3D')
    test_aug = _find(base_dataset(cfg.test_dataloader.dataset).pipeline, 'ImageAug3D')
    train_aug = ImageAug3D(**{**{k: v for k, v in train_aug.items() if k != 'type'}, 'final_dim': size})
    test_aug = ImageAug3D(**{**{k: v for k, v in test_aug.items() if k != 'type'}, 'final_dim': size})
    pre = cfg.model.get('data_preprocessor', {})
    mean, std = pre.get('mean', (123.675, 116.28, 103.53)), pre.get('std', (58.395, 57.12, 57.375))

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    backbone_cfg = {k: v for k, v in cam.backbone.items() if k not in ('init_cfg', 'pretrained')}
    neck_cfg = {k: v for k, v in cam.neck.items() if k != 'init_cfg'}
    backbone, neck = MODELS.build(backbone_cfg), MODELS.build(neck_cfg)
    with quiet_logger():  # mmengine lists every initialised tensor
        backbone.init_weights()
        neck.init_weights()
    probe = SegmentationProbe(backbone, neck, neck_cfg['out_channels'], len(PIXEL_CLASSES))

    t0 = time.time()
    workers = args.workers or min(os.cpu_count() or 1, 8)
    images, labels = render_labelled_images(args.frames, args.seed, workers=workers, verbose=True)
    # held-out frames: the same maps, other places and objects (frames numbered after the training ones)
    held_out = render_labelled_images(args.held_out_frames, args.seed, first_frame=args.frames, workers=workers)
    t_render = time.time() - t0
    print(f'[pretrain] {len(images)} training and {len(held_out[0])} held-out images of {images.shape[2]}x'
          f'{images.shape[1]} rendered in {t_render:.0f} s; training at {size[1]}x{size[0]}', flush=True)
    t1 = time.time()
    res = pretrain_camera(probe, images, labels, train_aug, test_aug, mean, std, args.iters, args.batch_size,
                          args.lr, held_out)
    t_train = time.time() - t1
    iou = '  '.join(f'{c} {100 * v:.1f}' for c, v in res['iou'].items() if v is not None)
    print(f'[pretrain] held-out pixel accuracy {100 * res["pixel_acc"]:.1f}%, mIoU {100 * res["miou"]:.1f}: {iou}')

    meta = dict(config=args.config, frames=args.frames, held_out_frames=args.held_out_frames, iters=args.iters,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, classes=list(PIXEL_CLASSES),
                image_size=list(size), held_out=dict(pixel_acc=res['pixel_acc'], miou=res['miou'], iou=res['iou']),
                final_loss=float(np.mean(res['loss'][-50:])), render_s=round(t_render, 1),
                train_s=round(t_train, 1), torch=str(torch.__version__))
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state.update({f'neck.{k}': v for k, v in neck.state_dict().items()})
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    torch.save({'state_dict': state, 'meta': meta}, tmp)
    os.replace(tmp, args.out)
    write_json_atomic(osp.splitext(args.out)[0] + '.json', {**meta, 'loss': [round(v, 4) for v in res['loss']]})
    print(f'[pretrain] wrote {args.out} ({len(state)} tensors) in {time.time() - t0:.0f} s')


if __name__ == '__main__':
    main()
