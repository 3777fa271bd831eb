"""Calibrated training under DistributedDataParallel (2 CPU processes, gloo)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from fuller.testing import tiny_config

STEPS = 3


def _build(cfg_path: str, accumulative_counts: int = 1):
    from fuller.registry import MODELS

    cfg = Config.fromfile(cfg_path)
    init_default_scope('fuller')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    ow_cfg = dict(cfg.optim_wrapper)
    if accumulative_counts > 1:
        ow_cfg['accumulative_counts'] = accumulative_counts
    return model, ow_cfg


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    from fuller.engine import FullerDistributedDataParallel

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        samples = torch.load(os.path.join(tmp, 'samples.pth'), weights_only=False)
        model, ow_cfg = _build(os.path.join(tmp, 'cfg.py'))
        ddp = FullerDistributedDataParallel(module=model, broadcast_buffers=False, find_unused_parameters=True)
        ow = build_optim_wrapper(model, ow_cfg)
        logs = []
        for step in range(STEPS):
            logs.append(ddp.train_step(pseudo_collate([samples[world * step + rank]]), ow))
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        torch.save({'params': params, 'cos': [float(x['calib/cos']) for x in logs]},
                   os.path.join(tmp, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_calibrated_training_matches_single_process_accumulation(demo_root, tmp_path):
    from fuller.registry import DATASETS
    from fuller.testing import REPO_ROOT

    cfg = tiny_config(demo_root, str(tmp_path / 'work'),
                      config=os.path.join(REPO_ROOT, 'configs', 'fuller',
                                          'fuller_lc_r18-tiny_1x2-300it_nuscenes-demo-det-map.py'))
    cfg.dump(str(tmp_path / 'cfg.py'))
    init_default_scope('fuller')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    samples = [dataset[i] for i in range(2 * STEPS)]
    torch.save(samples, tmp_path / 'samples.pth')

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / 'rank0.pth', weights_only=False)
    r1 = torch.load(tmp_path / 'rank1.pth', weights_only=False)
    for k in r0['params']:
        torch.testing.assert_close(r0['params'][k], r1['params'][k], rtol=0, atol=0, msg=f'ranks differ at {k}')
    # Calibration is per rank: each rank's statistics come from its own sample.
    assert r0['cos'] != r1['cos']

    # Single process: the same micro-batches, gradients accumulated over the two "ranks".
    model, ow_cfg = _build(str(tmp_path / 'cfg.py'), accumulative_counts=2)
    ow = build_optim_wrapper(model, ow_cfg)
    ow.initialize_count_status(model, 0, 2 * STEPS)
    for i in range(2 * STEPS):
        model.train_step(pseudo_collate([samples[i]]), ow)
    init = _build(str(tmp_path / 'cfg.py'))[0].state_dict()
    for k, v in model.named_parameters():
        torch.testing.assert_close(v.detach(), r0['params'][k], rtol=1e-4, atol=1e-5, msg=f'DDP != single at {k}')
    assert not torch.equal(model.state_dict()['fuser.fuse.0.weight'], init['fuser.fuse.0.weight'])
