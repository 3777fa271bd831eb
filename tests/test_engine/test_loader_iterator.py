"""Iteration-based training crosses epoch ends without mmengine's 2 s pause when the data loader
has no worker processes, and sees the same batches in the same order."""

import mmengine.runner.loops as mm_loops
import pytest
import torch
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import DataLoader

from fuller.engine import FullerRunner
from fuller.engine.runner import EpochLoaderIterator


def _loader(num_workers: int = 0) -> DataLoader:
    data = [{'inputs': torch.tensor([float(i)])} for i in range(5)]
    return DataLoader(data, batch_size=2, sampler=DefaultSampler(data, shuffle=True, seed=3),
                      collate_fn=pseudo_collate, num_workers=num_workers)


def _ids(batch) -> list[int]:
    return [int(x) for x in batch['inputs']]


def test_iterator_gives_mmengine_batches_without_pausing(monkeypatch):
    monkeypatch.setattr(mm_loops.time, 'sleep', lambda s: None)
    want = mm_loops._InfiniteDataloaderIterator(_loader())
    want = [_ids(next(want)) for _ in range(10)]  # 3 batches an epoch: 3 epoch ends
    assert len({tuple(w) for w in want[:3]} ^ {tuple(w) for w in want[3:6]}) > 0  # reshuffled per epoch

    def no_sleep(s):
        raise AssertionError(f'slept {s} s')
    monkeypatch.setattr(mm_loops.time, 'sleep', no_sleep)
    it = EpochLoaderIterator(_loader())
    assert [_ids(next(it)) for _ in range(10)] == want
    assert it._epoch == 3


class _Recorder(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.seen.append([int(x) for x in inputs])
        return {'loss': self.w.sum() * 0}


def _runner(tmp_path, num_workers: int) -> FullerRunner:
    return FullerRunner(model=_Recorder(), work_dir=str(tmp_path), train_dataloader=_loader(num_workers),
                        train_cfg=dict(by_epoch=False, max_iters=7),
                        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.0)),
                        default_hooks=dict(checkpoint=None, logger=None), default_scope='mmengine')


def test_runner_trains_across_epochs_without_pausing(tmp_path, monkeypatch):
    monkeypatch.setattr(mm_loops.time, 'sleep', lambda s: pytest.fail(f'training paused {s} s at an epoch end'))
    runner = _runner(tmp_path, num_workers=0)
    runner.train()
    assert isinstance(runner.train_loop.dataloader_iterator, EpochLoaderIterator)
    ref = EpochLoaderIterator(_loader())
    assert runner.model.seen == [_ids(next(ref)) for _ in range(7)]


def test_loader_with_workers_keeps_mmengine_iterator(tmp_path):
    runner = _runner(tmp_path / 'w', num_workers=1)
    loop = runner.build_train_loop(runner._train_loop)
    assert type(loop.dataloader_iterator) is mm_loops._InfiniteDataloaderIterator


def test_swapping_the_iterator_draws_no_random_number(tmp_path):
    """The loop's iterator is taken over, not started again: starting one draws a seed from torch's
    global generator, and the run's random numbers would differ from mmengine's."""
    from mmengine.runner import Runner

    runner = _runner(tmp_path, num_workers=0)
    loop = dict(type='IterBasedTrainLoop', max_iters=7)
    torch.manual_seed(0)
    Runner.build_train_loop(runner, dict(loop))
    want = torch.get_rng_state()
    torch.manual_seed(0)
    assert isinstance(runner.build_train_loop(dict(loop)).dataloader_iterator, EpochLoaderIterator)
    assert torch.equal(torch.get_rng_state(), want)
