"""The benchmarks' inputs: random points in the range against a sample's own (``--points real``)."""

import torch
from mmengine.registry import init_default_scope

from fuller.analysis.benchmarks.common import load_batch, synthetic_batch, voxels_per_sample
from fuller.testing import tiny_config


def test_random_points_make_more_voxels_than_a_scan_of_as_many(demo_root, tmp_path):
    """What the tables' notes say: the samples' own points and images are kept with 'real'; random
    points fill the range's volume and get many more voxels than a scan's surfaces of as many."""
    from fuller.registry import MODELS

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path))
    real = synthetic_batch(cfg, 1, 'real')
    same = load_batch(cfg, 1)
    # The same scan (the training pipeline's augmentation moves the points, not their returns).
    assert torch.equal(real['inputs']['points'][0][:, 3:], same['inputs']['points'][0][:, 3:])
    n = real['inputs']['points'][0].shape[0]
    rand = synthetic_batch(cfg, 1, n)
    assert rand['inputs']['points'][0].shape[0] == n
    assert not torch.equal(rand['inputs']['points'][0][:, 3], same['inputs']['points'][0][:, 3])
    model = MODELS.build(cfg.model)
    v_real = voxels_per_sample(model, model.data_preprocessor(real, True))
    v_rand = voxels_per_sample(model, model.data_preprocessor(rand, True))
    assert 0 < v_real < v_rand / 3, (v_real, v_rand)


def test_real_samples_are_the_same_in_every_call(demo_root, tmp_path):
    """The training pipeline augments at random; the benchmarks seed it, so that the modules
    benchmark's processes (one per module) time the same sample."""
    import numpy as np

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path))
    first = load_batch(cfg, 2)
    np.random.rand(7)  # whatever ran before
    second = load_batch(cfg, 2)
    for a, b in zip(first['inputs']['points'], second['inputs']['points']):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(first['inputs']['imgs'], second['inputs']['imgs']))
