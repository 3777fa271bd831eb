"""The test pictures are drawn in several processes where the machine has the cores, and each
picture is the one a single process draws (fuller/engine/hooks.py: BEVVisualizationHook)."""

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fuller.engine.hooks import BEVVisualizationHook, picture_processes

forking = pytest.mark.skipif(not hasattr(os, 'fork') or sys.platform == 'darwin', reason='drawers are forked')


def _hook(tmp_path, name: str, map_classes=('drivable_area', 'divider')) -> BEVVisualizationHook:
    """A hook as ``before_test`` leaves it, with four samples' arrays pending."""
    hook = BEVVisualizationHook(show_dir=str(tmp_path / name))
    hook._pending = str(tmp_path / name / '.pending' / 'rank0')
    os.makedirs(hook._pending)
    hook.map_extent, hook.bev_range = (-50, 50, -50, 50), 51.2
    hook.class_names, hook.map_classes, hook.cam_names = ('car',), tuple(map_classes), ('CAM_FRONT',)
    rng = np.random.default_rng(0)
    for i in range(4):
        np.savez(os.path.join(hook._pending, f'{i:05d}_token{i}.npz'),
                 points=rng.uniform(-40, 40, (300, 2)), gt_boxes=np.array([[10.0 + i, 0, -0.5, 4, 2, 1.5, 0.1 * i]]),
                 pred_boxes=np.array([[10.5, 0.2, -0.5, 4, 2, 1.5, 0]]), pred_scores=np.array([0.8]),
                 pred_labels=np.array([0]), gt_map=rng.random((2, 20, 20)) > 0.5,
                 pred_map=rng.random((2, 20, 20)).astype(np.float16), imgs=np.full((1, 60, 120, 3), 40 * i, np.uint8))
    return hook


def _runner(world_size: int = 1):
    return SimpleNamespace(world_size=world_size, logger=SimpleNamespace(info=lambda msg: None))


def test_one_drawer_per_usable_cpu_shared_between_ranks_and_never_more_than_the_pictures(monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    assert picture_processes(0) == picture_processes(1) == 1
    if not hasattr(os, 'fork') or sys.platform == 'darwin':
        assert picture_processes(12) == 1
        return
    assert picture_processes(12) == 8 and picture_processes(3) == 3
    assert picture_processes(12, world_size=4) == 2 and picture_processes(12, world_size=16) == 1


@forking
def test_pictures_drawn_by_forked_processes_equal_one_process_s(tmp_path, monkeypatch):
    import fuller.engine.hooks as hooks

    serial, parallel = _hook(tmp_path, 'one'), _hook(tmp_path, 'two')
    monkeypatch.setattr(hooks, 'picture_processes', lambda n, world_size=1: 1)
    serial.after_test_epoch(_runner(), {'map/thr_divider': 0.35})
    monkeypatch.setattr(hooks, 'picture_processes', lambda n, world_size=1: 2)
    parallel.after_test_epoch(_runner(), {'map/thr_divider': 0.35})
    names = sorted(os.listdir(tmp_path / 'one'))
    assert names == [f'{i:05d}_token{i}.png' for i in range(4)] == sorted(os.listdir(tmp_path / 'two'))
    for name in names:  # the pending arrays are gone, the pictures are the same bytes
        assert (tmp_path / 'one' / name).read_bytes() == (tmp_path / 'two' / name).read_bytes()
    assert (tmp_path / 'one' / names[0]).read_bytes() != (tmp_path / 'one' / names[1]).read_bytes()


@forking
def test_a_drawer_s_error_reaches_the_test_run(tmp_path, monkeypatch):
    import fuller.engine.hooks as hooks

    hook = _hook(tmp_path, 'bad', map_classes=('drivable_area',))  # two masks, one class named
    monkeypatch.setattr(hooks, 'picture_processes', lambda n, world_size=1: 2)
    with pytest.raises(ValueError, match='2 map masks but map_classes'):
        hook.after_test_epoch(_runner(), {})
