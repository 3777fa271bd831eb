"""Class-balanced grouping and sampling (CBGS) over FULLER's dataset: mmdet3d's CBGSDataset, as
BEVFusion trains on nuScenes (configs/nuscenes/default.yaml: data.train.type CBGSDataset)."""

import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope

from fuller.engine import base_dataset, read_config, set_data_root
from fuller.registry import DATASETS
from fuller.utils.cli import REPO_ROOT

NUSCENES = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_swint_8x4-20e_nuscenes-det-map.py')
DEMO = osp.join(REPO_ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')


def _cbgs(demo_root, seed=0, classes=None):
    cfg = read_config(DEMO)
    ds = base_dataset(cfg.train_dataloader.dataset)
    set_data_root(ds, demo_root)
    if classes is not None:
        ds.metainfo = dict(ds.get('metainfo') or {}, classes=classes)
    init_default_scope('fuller')
    np.random.seed(seed)
    return DATASETS.build(dict(type='CBGSDataset', dataset=ds))


def test_nuscenes_training_is_class_balanced():
    cfg = read_config(NUSCENES)
    train = cfg.train_dataloader.dataset
    assert train.type == 'CBGSDataset'
    inner = base_dataset(train)
    assert inner.type == 'NuScenesMultiTaskDataset' and inner.ann_file == 'nuscenes_infos_train.pkl'
    # the config's single statements reached the wrapped dataset
    assert inner.geometry == cfg.geometry
    assert base_dataset(cfg.val_dataloader.dataset).type == 'NuScenesMultiTaskDataset'  # evaluation is not resampled


def test_every_class_gets_the_same_number_of_draws(demo_root):
    """A rare class is drawn as often as a common one: with 'car' and 'bicycle' only, the samples that
    show a bicycle (fewer than those with a car) are drawn as many times as those with a car, and the
    share of drawn samples that show a bicycle rises."""
    cb = _cbgs(demo_root, classes=['car', 'bicycle'])
    src = cb.dataset
    has = {c: {i for i in range(len(src)) if c in src.get_cat_ids(i)} for c in (0, 1)}
    assert 0 < len(has[1]) < len(has[0])  # fewer demo samples show a bicycle than a car
    pairs = len(has[0]) + len(has[1])
    # mmdet3d's CBGS draws, class after class, int(n_c * (1/K) / (n_c / pairs)) ~ pairs / K samples
    # from the samples that show class c
    sizes = [int(len(has[c]) * (1 / 2) / (len(has[c]) / pairs)) for c in (0, 1)]
    assert len(cb) == sum(sizes) and all(abs(n - pairs / 2) <= 1 for n in sizes)
    assert set(cb.sample_indices[:sizes[0]]) <= has[0] and set(cb.sample_indices[sizes[0]:]) <= has[1]
    share_before = len(has[1]) / len(src)
    share_after = sum(1 in cb.get_cat_ids(i) for i in range(len(cb))) / len(cb)
    assert share_after > share_before
    item = cb[0]  # items come through the wrapped dataset's pipeline
    assert set(item) == {'inputs', 'data_samples'}


def test_the_draws_follow_the_seed(demo_root):
    """Every rank builds its own dataset: with the runner's common seed the draws agree."""
    assert _cbgs(demo_root, seed=3).sample_indices == _cbgs(demo_root, seed=3).sample_indices
    assert _cbgs(demo_root, seed=3).sample_indices != _cbgs(demo_root, seed=4).sample_indices


@pytest.mark.parametrize('wrapped', [True, False])
def test_set_data_root_reaches_a_wrapped_dataset(wrapped):
    cfg = read_config(NUSCENES)
    ds = cfg.train_dataloader.dataset if wrapped else base_dataset(cfg.train_dataloader.dataset)
    set_data_root(ds, '/elsewhere/nuscenes')
    assert base_dataset(ds).data_root == '/elsewhere/nuscenes'
    if wrapped:
        assert 'data_root' not in ds  # the wrapper takes no data_root


def test_a_split_without_some_class_is_one_clear_error(demo_root, tmp_path):
    """mmdet3d's CBGS divides by a class's share of the samples: on a split that lacks a class (a
    partial download, a subset of scenes) it ends in ZeroDivisionError. FULLER's names the classes
    and the file, and says what to do."""
    import pickle
    import shutil

    from fuller.datasets.info_io import load_info_file

    root = tmp_path / 'root'
    shutil.copytree(demo_root, root, symlinks=True)
    infos = load_info_file(str(root / 'nuscenes_infos_train.pkl'))
    trailer = list(infos['metainfo']['categories']).index('trailer') if 'categories' in infos['metainfo'] else 2
    for s in infos['data_list']:
        s['instances'] = [i for i in s['instances'] if i['bbox_label_3d'] != trailer]
    with open(root / 'nuscenes_infos_train.pkl', 'wb') as f:
        pickle.dump(infos, f)
    with pytest.raises(ValueError, match=r'nuscenes_infos_train.pkl \(\d+ samples\) has no sample of trailer: '
                                         r'class-balanced sampling needs every class'):
        _cbgs(str(root) + '/')
    _cbgs(str(root) + '/', classes=['car', 'truck', 'bus'])  # restricted to classes it has: balanced
