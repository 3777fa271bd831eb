import os
import os.path as osp
import random

import numpy as np
import pytest
import torch

SHARED_KEYFRAME = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '..', 'shared', 'data',
                           'nuscenes_real_keyframe')


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A tiny demo dataset (10 scenes x 2 keyframes) with info files, generated once per run."""
    from fuller.testing import make_tiny_demo

    root = str(tmp_path_factory.mktemp('nuscenes-demo'))
    return make_tiny_demo(root)


@pytest.fixture(scope='session')
def real_keyframe():
    path = os.environ.get('FULLER_REAL_KEYFRAME', SHARED_KEYFRAME)
    if not osp.isdir(path):
        pytest.skip(f'real nuScenes keyframe not found at {path}')
    return osp.abspath(path)
