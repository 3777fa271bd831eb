import io

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from fuller.engine.checkpoint_hook import from_plain, to_plain


def test_plain_round_trip_loads_with_weights_only():
    buf = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        buf.update(v)
    state = {'log_scalars': {'train/loss': buf}, 'runtime_info': {'iter': np.int64(3), 'arr': np.arange(4.0),
                                                                    'name': 'x', 'f': np.float32(0.5)}}
    f = io.BytesIO()
    torch.save(to_plain(state), f)
    f.seek(0)
    loaded = from_plain(torch.load(f, weights_only=True))
    restored = loaded['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.current() == 4.0 and restored.mean() == buf.mean()
    np.testing.assert_array_equal(loaded['runtime_info']['arr'], np.arange(4.0))
    assert loaded['runtime_info']['iter'] == 3


def test_raw_mmengine_objects_are_refused_by_safe_loader():
    f = io.BytesIO()
    torch.save({'buf': HistoryBuffer()}, f)
    f.seek(0)
    try:
        torch.load(f, weights_only=True)
    except Exception as e:  # the unsafe global is rejected, no code runs
        assert 'HistoryBuffer' in str(e)
    else:
        raise AssertionError('weights_only load accepted an arbitrary class')
