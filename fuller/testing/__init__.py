"""Fixtures for tests and tutorials: a tiny demo dataset and a tiny model config."""

import logging
import os.path as osp
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from mmengine.config import Config

from fuller.engine.tiny import DEMO_CONFIG, TINY_IMAGE, make_tiny_demo, tiny_config
from fuller.utils.cli import REPO_ROOT

from .faults import KillAtIterHook
from .processes import run, spawn
from .toy import ContractModel, two_head_linear


@contextmanager
def logged_messages(level: int = logging.INFO) -> Iterator[list[str]]:
    """The messages mmengine's current logger takes at ``level`` or above inside the block, as a
    list that fills while it runs."""
    from mmengine.logging import MMLogger

    messages: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a test's process group or launcher)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tiny_calibrated_config(data_root: str, work_dir: str, iters: int = 3) -> Config:
    """:func:`tiny_config` trained ``iters`` iterations with FULLER's calibrated wrapper
    (FullerInter + modality calibration), a checkpoint at the end."""
    cfg = tiny_config(data_root, work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.optim_wrapper = dict(type='CalibratedOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
                             inter=dict(type='FullerInter'), intra=dict(type='ModalityCalibrator', target='mean'))
    return cfg


def gt_submission(nusc, scene_names: tuple = ('scene-0103', 'scene-0916')) -> dict:
    """A nuScenes detection submission made of the ground truth of ``scene_names`` (score 1),
    straight from ``sample_annotation`` in the global frame; boxes without LiDAR or radar
    points are left out, as the devkit drops them from the ground truth."""
    from fuller.datasets.metainfo import CATEGORY_TO_CLASS

    scenes = {s['token'] for s in nusc.scene if s['name'] in scene_names}
    results = {}
    for sample in nusc.sample:
        if sample['scene_token'] not in scenes:
            continue
        recs = []
        for tok in sample['anns']:
            ann = nusc.get('sample_annotation', tok)
            name = CATEGORY_TO_CLASS.get(ann['category_name'])
            if name is None or ann['num_lidar_pts'] + ann['num_radar_pts'] == 0:
                continue  # not a detection class (debris, bicycle racks, animals, ...) or unseen
            attr = nusc.get('attribute', ann['attribute_tokens'][0])['name'] if ann['attribute_tokens'] else ''
            recs.append(dict(sample_token=sample['token'], translation=ann['translation'], size=ann['size'],
                             rotation=ann['rotation'], velocity=list(np.nan_to_num(nusc.box_velocity(tok)[:2])),
                             detection_name=name, detection_score=1.0,
                             attribute_name=attr))
        results[sample['token']] = recs
    meta = dict(use_camera=True, use_lidar=True, use_radar=False, use_map=False, use_external=False)
    return dict(meta=meta, results=results)
