"""Every config loads; model variants (modalities, tasks, heads) come from config alone."""

import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from fuller.testing import REPO_ROOT, tiny_config

CONFIGS = sorted(c for c in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
                 if osp.sep + '_base_' + osp.sep not in c)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, osp.join(REPO_ROOT, 'configs')))
def test_config_loads(path):
    cfg = Config.fromfile(path)
    assert cfg.model.type == 'FullerNet'
    assert cfg.optim_wrapper.type in ('GuardedOptimWrapper', 'CalibratedOptimWrapper')


def test_nuscenes_models_build_with_matching_grids():
    import fuller.models  # noqa: F401
    from fuller.registry import MODELS

    init_default_scope('fuller')
    full = MODELS.build(Config.fromfile(osp.join(REPO_ROOT, 'configs', 'fuller',
                                                 'fuller_lc_swint_8x4-20e_nuscenes-det-map.py')).model)
    lite = MODELS.build(Config.fromfile(osp.join(REPO_ROOT, 'configs', 'fuller',
                                                 'fuller-lite_lc_swint_8x4-20e_nuscenes-det-map.py')).model)
    # 1440 voxels / 8 = 360 LSS cells / 2 = 180: the grid both heads expect.
    for m in (full, lite):
        for head in m.heads.values():
            assert tuple(head.expected_input_shape()[0]) == (180, 180)
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert n(lite.heads) < 0.1 * n(full.heads)
    assert n(lite.encoders) == n(full.encoders)


@pytest.mark.parametrize('variant,heads,encoders', [
    ('camera_only', {'det', 'map'}, {'camera'}),
    ('lidar_only', {'det', 'map'}, {'lidar'}),
    ('det_only', {'det'}, {'camera', 'lidar'}),
    ('map_only', {'map'}, {'camera', 'lidar'}),
])
def test_demo_variant_trains_one_calibrated_step(demo_root, tmp_path, variant, heads, encoders):
    from mmengine.optim import build_optim_wrapper

    from fuller.registry import DATASETS, MODELS

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path), config=osp.join(REPO_ROOT, 'configs', 'ablation', 'demo',
                                                                f'{variant}.py'))
    model = MODELS.build(cfg.model)
    assert set(model.heads) == heads and set(model.encoders) == encoders
    assert (model.fuser is None) == (len(encoders) == 1)
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    log = model.train_step(data, ow)
    assert {k.split('.')[0] for k in log if '.loss' in k} == heads
    assert all(float(v) == float(v) for v in log.values())  # no NaN
