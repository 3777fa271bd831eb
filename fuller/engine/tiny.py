"""A tiny demo dataset and a tiny model config: for the tests, tutorials and the GPU check's dry
run (:mod:`fuller.testing` re-exports them)."""

import os.path as osp

import numpy as np
from mmengine.config import Config

from fuller.datasets.create_infos import create_nuscenes_infos
from fuller.datasets.gt_database import create_gt_database
from fuller.demo import DemoConfig, generate_demo_dataset
from fuller.utils.cli import REPO_ROOT

from .config import base_dataset, drop_pretrained, resolve_config, set_data_root

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
TINY_IMAGE = (64, 176)


def make_tiny_demo(root: str, keyframes: int = 2, sweeps: int = 1) -> str:
    """Generate a small demo dataset (10 scenes x ``keyframes``) with info files and the GT-paste
    database in ``root``."""
    cfg = DemoConfig(seed=0, keyframes=keyframes, sweeps=sweeps, image_scale=0.2, azimuth_steps=400)
    generate_demo_dataset(root, cfg, verbose=False)
    written = create_nuscenes_infos(root, 'v1.0-mini', osp.join(root, 'nuscenes'), max_sweeps=sweeps)
    create_gt_database(root, written['train'], 'nuscenes', sweeps=sweeps, progress=False)
    return root


def tiny_config(data_root: str, work_dir: str, config: str = DEMO_CONFIG) -> Config:
    """The demo config at a smaller image size, 2 iterations, no workers, in fp32 (any
    ``optim_wrapper.amp`` removed: a test computes the same on every CPU), rooted at
    ``data_root`` (resolved: the geometry and metainfo handed to the datasets and the model)."""
    cfg = Config.fromfile(config)
    cfg.optim_wrapper.pop('amp', None)
    root = data_root.rstrip('/') + '/'
    cfg.geometry.image_size = TINY_IMAGE
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.num_workers = 0
        loader.persistent_workers = False
        set_data_root(loader.dataset, root)
        for t in base_dataset(loader.dataset).pipeline:
            if t['type'] == 'ImageAug3D':
                t['resize_lim'] = (0.55, 0.55)
                t['bot_pct_lim'] = (0.0, 0.0)
            if t['type'] == 'LoadMultiSweepPoints':
                t['sweeps'] = 1
    cfg.train_dataloader.batch_size = 1
    for ev in (cfg.val_evaluator, cfg.test_evaluator):
        for m in ev if isinstance(ev, list) else [ev]:
            if 'data_root' in m:
                m['data_root'] = root
    if cfg.model.encoders.get('camera'):
        cfg.model.encoders.camera.vtransform.dbound = (1.0, 49.0, 2.0)
    # from scratch: a test's two iterations need no pretraining file (its loading is tested
    # on its own, tests/test_datasets/test_demo_pretrain.py)
    drop_pretrained(cfg.model)
    # no validation during training (mmengine would validate at the last iteration otherwise)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_begin=10**9, val_interval=10**9)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0, deterministic=False)
    cfg.vis_backends = [dict(type='LocalVisBackend')]
    cfg.visualizer.vis_backends = cfg.vis_backends
    np.random.seed(0)
    return resolve_config(cfg)
