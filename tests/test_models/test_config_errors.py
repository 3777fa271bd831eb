"""Invalid configs fail before training with an error naming the key."""

import copy

import pytest
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from fuller.testing import tiny_config


@pytest.fixture(scope='module')
def tiny(demo_root, tmp_path_factory):
    from fuller.registry import DATASETS

    init_default_scope('fuller')
    cfg = tiny_config(demo_root, str(tmp_path_factory.mktemp('work')))
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    return cfg, data


def _first_forward(cfg, data):
    from fuller.registry import MODELS

    model = MODELS.build(cfg.model)
    batch = model.data_preprocessor(data, True)
    return model(**batch, mode='loss')


def test_valid_tiny_config_passes_the_grid_check(tiny):
    cfg, data = tiny
    losses = _first_forward(cfg, data)
    assert 'det.loss_heatmap' in losses and 'map.loss_focal' in losses


def test_map_grid_mismatch_names_the_key(tiny):
    cfg, data = tiny
    cfg = copy.deepcopy(cfg)
    cfg.model.heads.map.grid_transform = dict(input_scope=[(-51.2, 51.2, 0.8), (-51.2, 51.2, 0.8)])
    with pytest.raises(ValueError, match=r'model\.heads\.map\.grid_transform\.input_scope = .* but the geometry '
                                         r'gives .*1\.6.*the shared BEV grid'):
        _first_forward(cfg, data)


def test_det_grid_mismatch_names_the_key(tiny):
    cfg, data = tiny
    cfg = copy.deepcopy(cfg)
    cfg.model.heads.det.train_cfg.out_size_factor = 4
    with pytest.raises(ValueError, match=r'model\.heads\.det\.train_cfg\.out_size_factor = 4 but the geometry '
                                         r'gives 2 \(bev_stride\)'):
        _first_forward(cfg, data)


def test_unknown_type_and_bad_calibration_option_name_the_key(tiny):
    from mmengine.optim import build_optim_wrapper

    from fuller.registry import MODELS

    cfg, _ = tiny
    bad = copy.deepcopy(cfg)
    bad.model.fuser.type = 'ConvFusr'
    with pytest.raises(KeyError, match='ConvFusr'):
        MODELS.build(bad.model)
    model = MODELS.build(cfg.model)
    with pytest.raises(ValueError, match=r"inter.type='UPGard' is not a rule: FULLER's rules are "
                                         r"\['FullerInter', 'Mean', 'Sum'\]; torchjd aggregators: .*'UPGrad'"):
        build_optim_wrapper(model, dict(type='CalibratedOptimWrapper', optimizer=dict(type='SGD', lr=0.1),
                                        inter=dict(type='UPGard')))
    with pytest.raises(ValueError, match="intra target must be"):
        build_optim_wrapper(model, dict(type='CalibratedOptimWrapper', optimizer=dict(type='SGD', lr=0.1),
                                        intra=dict(type='ModalityCalibrator', target='avg')))
