"""Whole-batch calibration under DDP: with sync='global' two ranks update exactly as one process
that calibrates their concatenated batch; with sync='local' they do not."""

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from mmengine.model import BaseModel
from torch import nn

from fuller.calibration import TaskOutputs
from fuller.testing import free_port, spawn

STEPS = 3
PER_RANK = 4


class ToyFusion(BaseModel):
    """Camera and LiDAR branches, a fuser, two heads with per-sample mean losses: the
    contract of FullerNet's ``'tasks'`` forward on a model whose losses are exact means."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cam, self.lidar = nn.Linear(4, 6), nn.Linear(3, 6)
        self.fuse = nn.Linear(12, 8)
        self.det, self.map = nn.Linear(8, 2), nn.Linear(8, 3)
        with torch.no_grad():
            self.lidar.weight.mul_(20.0)  # the LiDAR branch dominates: intra calibration matters

    def forward(self, inputs, data_samples=None, mode='tasks', modality=None):
        cam, lidar = self.cam(inputs[:, :4]), self.lidar(inputs[:, 4:])
        if modality is not None:
            cam, lidar = modality(cam, lidar)
        shared = torch.tanh(self.fuse(torch.cat([cam, lidar], 1)))
        leaf = shared.detach().requires_grad_(True)
        y = data_samples
        groups = {'det': {'loss': ((self.det(leaf) - y[:, :2]) ** 2).mean()},
                  'map': {'loss': 10 * ((self.map(leaf) - y[:, 2:]) ** 2).mean()}}
        return TaskOutputs(groups, shared, leaf)

    def train_step(self, data, optim_wrapper):
        return optim_wrapper.train_step(self, data)


def _data(step: int):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(2 * PER_RANK, 7, generator=g)
    y = torch.randn(2 * PER_RANK, 5, generator=g)
    return x, y


def _wrapper(model, sync: str):
    from fuller.engine import CalibratedOptimWrapper

    return CalibratedOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                                  inter=dict(type='FullerInter'), intra=dict(type='ModalityCalibrator'), sync=sync)


def _recorded(model, ow) -> list:
    store, step = [], ow.optimizer.step

    def recording_step(*a, **k):
        store.append({n: (p.detach().clone(), p.grad.detach().clone()) for n, p in model.named_parameters()})
        return step(*a, **k)

    ow.optimizer.step = recording_step
    return store


def _train(rank: int, tmp: str, sync: str) -> None:
    from fuller.engine import FullerDistributedDataParallel

    model = ToyFusion()
    ddp = FullerDistributedDataParallel(module=model)
    ow = _wrapper(model, sync)
    steps = _recorded(model, ow)
    logs = []
    for step in range(STEPS):
        x, y = _data(step)
        sl = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        logs.append(ddp.train_step(dict(inputs=x[sl], data_samples=y[sl]), ow))
    torch.save({'steps': steps, 'logs': logs}, os.path.join(tmp, f'{sync}{rank}.pth'))


def _worker(rank: int, world: int, port: int, tmp: str, sync: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world, timeout=timedelta(seconds=240))
    try:
        # The DDP wrapper dies with _train's frame, while its process group lives: released after
        # destroy_process_group (when _worker returned), gloo hung in its destructor now and then.
        _train(rank, tmp, sync)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_global_sync_equals_one_process_on_the_concatenated_batch(tmp_path):
    for sync in ('global', 'local'):
        spawn(_worker, args=(2, free_port(), str(tmp_path), sync), nprocs=2, timeout=300)
    runs = {s: [torch.load(tmp_path / f'{s}{r}.pth', weights_only=False) for r in (0, 1)] for s in ('global', 'local')}
    g0, g1 = runs['global']
    # every rank applies the same weights and modality scales: those of the global batch
    for a, b in zip(g0['logs'], g1['logs']):
        for k in ('calib/weight_det', 'calib/weight_map', 'calib/cos', 'calib/cam_lidar_ratio_before'):
            assert a[k] == pytest.approx(b[k], rel=1e-6), k
    l0, l1 = runs['local']
    assert l0['logs'][0]['calib/weight_det'] != pytest.approx(l1['logs'][0]['calib/weight_det'], rel=1e-3)

    for sync, expect_equal in (('global', True), ('local', False)):
        rec = runs[sync][0]['steps']
        worst = 0.0
        for step, before in enumerate(rec):
            model = ToyFusion()
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(before[n][0])
            ow = _wrapper(model, sync)
            single = _recorded(model, ow)
            x, y = _data(step)
            log = model.train_step(dict(inputs=x, data_samples=y), ow)
            num = sum(float((single[0][n][1] - before[n][1]).norm()) ** 2 for n in before) ** 0.5
            den = sum(float(before[n][1].norm()) ** 2 for n in before) ** 0.5
            worst = max(worst, num / den)
            if expect_equal:
                assert log['calib/weight_map'] == pytest.approx(runs[sync][0]['logs'][step]['calib/weight_map'],
                                                                rel=1e-5)
        if expect_equal:
            assert worst < 1e-5, f'global: DDP gradient differs from the concatenated batch by {worst:.3g}'
        else:
            assert worst > 1e-3, 'local calibration should differ from calibrating the concatenated batch'
