"""Loading weights: exact by default, partial only on request, untrusted files run no code."""

import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from torch import nn

from fuller.engine import (
    CheckpointLoadError,
    CheckpointMismatchError,
    FullerRunner,
    extract_state_dict,
    load_checkpoint_file,
    match_state_dict,
)
from fuller.testing import REPO_ROOT, tiny_config


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _mmengine_style_checkpoint(path, state) -> None:
    """What plain mmengine/mmdet3d training saves: weights plus mmengine/numpy objects."""
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save({'meta': {'epoch': 3, 'seed': np.int64(0)}, 'state_dict': state,
                'message_hub': {'log_scalars': {'train/loss': buf}}}, path)


class _Exploit:
    """Pickles to a call of os.system: loading this with a full unpickler runs a command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_match_state_dict_reports_missing_unexpected_and_mismatched():
    net = _net()
    state = dict(net.state_dict())
    state.pop('0.bias')
    state['extra.weight'] = torch.zeros(1)
    state['2.weight'] = torch.zeros(5, 4)
    report = match_state_dict(net, state)
    assert not report.exact
    assert report.missing == ['0.bias']
    assert report.unexpected == ['extra.weight']
    assert report.mismatched == [('2.weight', (5, 4), (2, 4))]
    text = report.describe()
    assert 'missing from the file' in text and '0.bias' in text and '2.weight: (5, 4) vs (2, 4)' in text
    assert match_state_dict(net, net.state_dict()).exact


def test_safe_loader_refuses_a_plain_mmengine_checkpoint_and_trust_loads_it(tmp_path):
    net = _net()
    path = str(tmp_path / 'mmengine.pth')
    _mmengine_style_checkpoint(path, net.state_dict())
    with pytest.raises(CheckpointLoadError, match=r'mmengine.pth holds Python objects.*--trust-checkpoint.*'
                                                  r'extract_weights.py'):
        load_checkpoint_file(path)
    ckpt = load_checkpoint_file(path, trusted=True)
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert torch.equal(ckpt['state_dict']['0.weight'], net.state_dict()['0.weight'])


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointLoadError, match='checkpoint file not found: .*nope.pth'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))
    bad = tmp_path / 'half.pth'
    torch.save({'state_dict': _net().state_dict()}, bad)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(CheckpointLoadError, match='cannot read checkpoint .*half.pth'):
        load_checkpoint_file(str(bad))


def test_extracting_weights_of_an_untrusted_file_runs_no_code(tmp_path):
    net = _net()
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': net.state_dict(), 'meta': {'hook': _Exploit(str(marker))}}, path)
    # the exploit is real: a full unpickler runs it
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    state = extract_state_dict(str(path))
    assert not marker.exists()
    assert set(state) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    # and the tool writes a checkpoint the safe loader accepts
    out = tmp_path / 'weights.pth'
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'misc', 'extract_weights.py'), str(path),
                           str(out)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert match_state_dict(net, load_checkpoint_file(str(out))['state_dict']).exact


def test_plain_mmengine_checkpoint_extracts_to_its_tensors(tmp_path):
    """A plain mmengine checkpoint (HistoryBuffer, numpy) extracts to exactly its tensors."""
    net = _net()
    path = str(tmp_path / 'mmengine.pth')
    _mmengine_style_checkpoint(path, net.state_dict())
    state = extract_state_dict(path)
    assert match_state_dict(net, state).exact
    bare = tmp_path / 'bare.pth'
    torch.save([1, 2, 3], bare)
    with pytest.raises(CheckpointLoadError, match='bare.pth has no state_dict'):
        extract_state_dict(str(bare))
    not_torch = tmp_path / 'pickle.pth'
    with open(not_torch, 'wb') as f:
        pickle.dump({'state_dict': {}}, f)
    with pytest.raises(CheckpointLoadError, match='cannot read checkpoint .*pickle.pth'):
        extract_state_dict(str(not_torch))


@pytest.fixture(scope='module')
def runner(demo_root, tmp_path_factory):
    cfg = tiny_config(demo_root, str(tmp_path_factory.mktemp('runner')))
    return FullerRunner.from_cfg(cfg)


def test_runner_loads_exactly_or_fails_naming_file_and_keys(runner, tmp_path):
    model = runner.model
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': model.state_dict()}, good)
    runner.cfg.load_partial = False
    runner.load_checkpoint(str(good))  # exact: loads
    state = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(k for k in state if k.startswith('heads.det') and k.endswith('weight'))
    state[key] = torch.zeros(3, *state[key].shape[1:])
    dropped = next(k for k in state if k.startswith('encoders.lidar'))
    state.pop(dropped)
    state['heads.other.weight'] = torch.ones(2)
    bad = tmp_path / 'other_config.pth'
    torch.save({'state_dict': state}, bad)
    with pytest.raises(CheckpointMismatchError) as e:
        runner.load_checkpoint(str(bad))
    msg = str(e.value)
    assert 'other_config.pth does not fit the model' in msg and key in msg and dropped in msg
    assert 'heads.other.weight' in msg and '--load-partial' in msg


def _load(runner, path, partial):
    runner.cfg.load_partial = partial
    try:
        runner.load_checkpoint(str(path))
    finally:
        runner.cfg.load_partial = False


def test_runner_partial_load_loads_whole_parts_and_leaves_fragments(runner, tmp_path):
    """--load-partial loads the parts that fit whole; a part that fits only in part (here the
    detection head with one tensor of another shape, the sparse encoder with one BatchNorm gone)
    is a fragment, left as initialised and listed, unless --load-fragments asks for it."""
    model = runner.model
    state = {k: v.clone() + 1 if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}
    key = next(k for k in state if k.startswith('heads.det') and k.endswith('weight'))
    state[key] = torch.zeros(3, *state[key].shape[1:])
    bn = next(k for k in state if k.startswith('encoders.lidar.') and k.endswith('running_var'))
    del state[bn]
    path = tmp_path / 'partial.pth'
    torch.save({'state_dict': state}, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _load(runner, path, True)
    now = model.state_dict()
    for k in now:
        if k.startswith('heads.det.') or k.startswith('encoders.lidar.'):
            assert torch.equal(now[k], before[k]), k  # fragments: left as they were
        elif now[k].is_floating_point():
            assert torch.equal(now[k], state[k]), k  # whole parts: loaded
    log = open(runner.logger.handlers[-1].baseFilename).read()
    assert 'Partial load of' in log and f'{key}: (3,' in log
    n_det = sum(k.startswith('heads.det.') for k in now)
    assert f'heads.det: {n_det - 1}/{n_det} tensors fit: a fragment, left as initialised' in log
    assert 'encoders.camera.backbone: ' in log and 'tensors fit: loaded' in log
    assert match_state_dict(model, state).fragments == ['encoders.lidar.backbone', 'heads.det']
    _load(runner, path, 'fragments')  # --load-fragments: what fits of the fragments too
    now = model.state_dict()
    assert torch.equal(now[key], before[key]) and all(
        torch.equal(now[k], state[k]) for k in now if k.startswith('heads.det.') and k != key and
        now[k].is_floating_point())
    model.load_state_dict(match_state_dict(model, before).loadable)  # with the model's metadata (spconv)


def test_runner_refuses_a_file_with_no_tensor_that_fits_also_with_load_partial(runner, tmp_path):
    path = tmp_path / 'other_model.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(3)}}, path)
    for partial in (False, True):
        with pytest.raises(CheckpointMismatchError, match='no tensor of .*other_model.pth fits the model'):
            _load(runner, path, partial)
    only_fragments = tmp_path / 'fragment.pth'
    key = next(k for k in runner.model.state_dict() if k.startswith('heads.det') and k.endswith('weight'))
    torch.save({'state_dict': {key: runner.model.state_dict()[key]}}, only_fragments)
    with pytest.raises(CheckpointMismatchError, match='(?s)only fragments.*--load-fragments'):
        _load(runner, only_fragments, True)


def test_bevfusion_checkpoints_are_refused_not_loaded_in_the_wrong_layout(runner, tmp_path):
    """A BEVFusion-MIT checkpoint has FULLER's names and mostly its shapes but [C, X, Y] BEV kernels:
    refused on every path, with the one part that loads as it is; an mmdet3d BEVFusion one too."""
    state = {k: v.clone() for k, v in runner.model.state_dict().items()}
    state['encoders.camera.vtransform.frustum'] = torch.zeros(118, 32, 88, 3)
    state['encoders.camera.vtransform.dx'] = torch.tensor([0.3, 0.3, 20.0])
    mit = tmp_path / 'bevfusion-det.pth'
    torch.save({'state_dict': state}, mit)
    for partial in (False, True, 'fragments'):
        with pytest.raises(CheckpointMismatchError, match=r'bevfusion-det.pth: it is a BEVFusion-MIT checkpoint.*'
                                                          r"\[C, X, Y\].*prefix='encoders.camera.backbone.'"):
            _load(runner, mit, partial)
    mm = tmp_path / 'mmdet3d-bevfusion.pth'
    torch.save({'state_dict': {f'{p}w': torch.zeros(1) for p in ('img_backbone.', 'pts_middle_encoder.',
                                                                  'fusion_layer.', 'bbox_head.')}}, mm)
    with pytest.raises(CheckpointMismatchError, match="mmdet3d projects/BEVFusion's.*prefix='img_backbone.'"):
        _load(runner, mm, True)
