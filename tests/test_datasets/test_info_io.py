"""Info files are read without running code they carry (fuller/datasets/info_io.py)."""

import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fuller.datasets.info_io import UnsafeInfoFileError, load_info_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class _Payload:
    """Unpickling it runs ``touch <marker>`` (what a malicious info file does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _payload_info(demo_root, tmp_path):
    """The demo's val info file with a payload in its first sample; the marker path."""
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        data = pickle.load(f)
    marker = tmp_path / 'payload_ran'
    data['data_list'][0]['extra'] = _Payload(marker)
    path = tmp_path / 'evil_infos_val.pkl'
    with open(path, 'wb') as f:
        pickle.dump(data, f)
    return path, marker


def test_info_files_of_every_protocol_and_numpy_values_round_trip(tmp_path):
    obj = {'metainfo': {'info_version': '1.1'},
           'data_list': [{'m': np.eye(4), 'f32': np.arange(5, dtype=np.float32), 's': np.float64(2.5),
                          'i': np.int64(7), 'b': np.bool_(True), 'strs': np.array(['a', 'bc']),
                          'set': {1, 2}, 'tup': (1, 2.0, 'x', None), 'bytes': b'\x00\xff'}]}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f'p{protocol}.pkl'
        with open(path, 'wb') as f:
            pickle.dump(obj, f, protocol=protocol)
        got = load_info_file(str(path))['data_list'][0]
        want = obj['data_list'][0]
        for k, v in want.items():
            if isinstance(v, np.ndarray):
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v), (protocol, k)
            else:
                assert got[k] == v and type(got[k]) is type(v), (protocol, k)


def test_the_demo_info_files_load_safely_and_equal_the_full_unpickler(demo_root):
    for split in ('train', 'val'):
        path = osp.join(demo_root, f'nuscenes_infos_{split}.pkl')
        with open(path, 'rb') as f:
            full = pickle.load(f)
        safe = load_info_file(path)
        assert pickle.dumps(safe) == pickle.dumps(full)


def test_a_payload_info_file_runs_no_code_and_is_refused_naming_file_and_global(demo_root, tmp_path):
    from mmengine.registry import init_default_scope

    from fuller.registry import DATASETS

    path, marker = _payload_info(demo_root, tmp_path)
    with pytest.raises(UnsafeInfoFileError, match=rf'{path.name} names posix\.system.*--trust-info-files'):
        load_info_file(str(path))
    init_default_scope('fuller')
    cfg = dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(path), pipeline=[], test_mode=True)
    with pytest.raises(UnsafeInfoFileError, match=rf'{path.name} names posix\.system'):
        DATASETS.build(cfg)
    assert not marker.exists()
    # The opt-in is the full unpickler: the payload runs (this is what the default protects from).
    DATASETS.build(dict(cfg, trust_info_file=True))
    assert marker.exists()


def test_test_tool_refuses_a_payload_info_file_in_one_line(demo_root, tmp_path):
    path, marker = _payload_info(demo_root, tmp_path)
    cfg = osp.join(ROOT, 'configs', 'fuller', 'naive_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py')
    ckpt = tmp_path / 'none.pth'
    ckpt.write_bytes(b'')  # never reached: the dataset is refused first
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'test.py'), cfg, str(ckpt), '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', f'test_dataloader.dataset.data_root={demo_root}',
         f'test_dataloader.dataset.ann_file={path}', 'test_dataloader.num_workers=0',
         'test_dataloader.persistent_workers=False'],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0
    assert not marker.exists(), 'the payload ran'
    assert 'names posix.system' in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
