"""Decoded inputs kept in memory (``cache_mb``) give the samples reading every time gives, and
the cache's arrays never change (fuller/datasets/transforms/loading.py: ArrayCache)."""

import copy

import numpy as np
import pytest
from mmengine.registry import init_default_scope

from fuller.datasets.transforms.loading import ArrayCache, LoadMultiSweepPoints, LoadMultiViewImages


@pytest.fixture(scope='module')
def infos(demo_root, tmp_path_factory):
    from fuller.registry import DATASETS
    from fuller.testing import tiny_config

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path_factory.mktemp('work')))
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    return [ds.get_data_info(i) for i in range(min(6, len(ds)))]


def _run(transform, infos, seed: int) -> list[dict]:
    np.random.seed(seed)
    return [transform(copy.deepcopy(info)) for info in infos]


@pytest.mark.parametrize('test_mode', [True, False])  # False: 2 of each keyframe's 4 sweeps drawn at random
def test_cached_points_equal_points_read_every_time_over_epochs(infos, test_mode):
    plain = LoadMultiSweepPoints(sweeps=2, test_mode=test_mode)
    cached = LoadMultiSweepPoints(sweeps=2, test_mode=test_mode, cache_mb=64)
    for epoch in range(3):
        want, got = _run(plain, infos, epoch), _run(cached, infos, epoch)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(b['points'].tensor.numpy(), a['points'].tensor.numpy())
            b['points'].tensor[:] = 0  # what a later step does to its points stays there
    assert len(cached.cache) >= len(infos) and 0 < cached.cache.nbytes <= 64 * 2**20
    assert plain.cache is None


def test_images_from_the_cache_are_the_decoded_pixels_and_their_own_arrays(infos):
    for to_float32 in (True, False):
        plain = LoadMultiViewImages(to_float32=to_float32)
        cached = LoadMultiViewImages(to_float32=to_float32, cache_mb=64)
        for _ in range(2):
            for a, b in zip(_run(plain, infos, 0), _run(cached, infos, 0)):
                for x, y in zip(a['imgs'], b['imgs']):
                    assert y.dtype == x.dtype and y.flags.writeable
                    np.testing.assert_array_equal(y, x)
                    y[:] = 0  # an in-place step downstream does not reach the cache
                np.testing.assert_array_equal(b['cam2img'], a['cam2img'])
        assert len(cached.cache) == 6 * len(infos)


def test_the_cache_keeps_what_fits_its_budget_and_stores_read_only():
    cache = ArrayCache(max_mb=1)
    first = cache.put('a', np.zeros(2**17, np.float32))  # 0.5 MiB
    assert cache.get('a') is first and not first.flags.writeable
    big = cache.put('b', np.zeros(2**18, np.float32))  # 1 MiB: over the budget, not kept
    assert cache.get('b') is None and big.flags.writeable and cache.nbytes == 2**19
    with pytest.raises(ValueError, match='cache_mb must be >= 0'):
        ArrayCache(-1)
