"""Calibrated training under DistributedDataParallel (2 CPU processes, gloo), sync='local'."""

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from fuller.engine import read_config
from fuller.testing import free_port, spawn, tiny_config

STEPS = 3


def _build(cfg_path: str, accumulative_counts: int = 1):
    from fuller.registry import MODELS

    cfg = read_config(cfg_path)
    if os.environ.get('CL_OFF'):
        cfg.model.channels_last = False
    init_default_scope('fuller')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    # per-rank calibration (sync='global': test_ddp_global.py), in fp32 (the demo schedule's
    # amp='auto' is bf16 on CPUs with bf16 units; the bounds below are float32 rounding's)
    ow_cfg = dict(cfg.optim_wrapper, sync='local', amp=None)
    if accumulative_counts > 1:
        ow_cfg['accumulative_counts'] = accumulative_counts
    return model, ow_cfg


def _record_steps(model, ow, store: list) -> None:
    """Before every optimizer step, keep the parameters and the (reduced, clipped) gradients."""
    step = ow.optimizer.step

    def recording_step(*args, **kwargs):
        store.append({k: (p.detach().clone(), None if p.grad is None else p.grad.detach().clone())
                      for k, p in model.named_parameters()})
        return step(*args, **kwargs)

    ow.optimizer.step = recording_step


def _train(rank: int, world: int, tmp: str) -> None:
    from fuller.engine import FullerDistributedDataParallel

    samples = torch.load(os.path.join(tmp, 'samples.pth'), weights_only=False)
    model, ow_cfg = _build(os.path.join(tmp, 'cfg.py'))
    ddp = FullerDistributedDataParallel(module=model, broadcast_buffers=False, find_unused_parameters=True)
    ow = build_optim_wrapper(model, ow_cfg)
    steps: list = []
    _record_steps(model, ow, steps)
    logs = []
    for step in range(STEPS):
        logs.append(ddp.train_step(pseudo_collate([samples[world * step + rank]]), ow))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.save({'params': params, 'steps': steps, 'cos': [float(x['calib/cos']) for x in logs]},
               os.path.join(tmp, f'rank{rank}.pth'))


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world, timeout=timedelta(seconds=240))
    try:
        _train(rank, world, tmp)  # the DDP wrapper released while its process group lives (test_ddp_global)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_calibrated_training_matches_single_process_accumulation(demo_root, tmp_path):
    from fuller.registry import DATASETS
    from fuller.testing import REPO_ROOT

    cfg = tiny_config(demo_root, str(tmp_path / 'work'),
                      config=os.path.join(REPO_ROOT, 'configs', 'fuller',
                                          'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'))
    cfg.dump(str(tmp_path / 'cfg.py'))
    init_default_scope('fuller')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    samples = [dataset[i] for i in range(2 * STEPS)]
    torch.save(samples, tmp_path / 'samples.pth')

    spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, timeout=300)
    r0 = torch.load(tmp_path / 'rank0.pth', weights_only=False)
    r1 = torch.load(tmp_path / 'rank1.pth', weights_only=False)
    for k in r0['params']:
        torch.testing.assert_close(r0['params'][k], r1['params'][k], rtol=0, atol=0, msg=f'ranks differ at {k}')
    # Calibration is per rank: each rank's statistics come from its own sample.
    assert r0['cos'] != r1['cos']

    # Each DDP step against a single process that starts from the same parameters and
    # accumulates the gradients of the two ranks' micro-batches. Comparing whole runs instead
    # would compare the CPU's rounding: this tiny model at initialisation amplifies a 1e-7
    # difference in summation order (one thread vs two, all-reduce vs accumulation) to percent
    # level within two steps.
    cfg_path = str(tmp_path / 'cfg.py')
    init = _build(cfg_path)[0].state_dict()
    for step, rec in enumerate(r0['steps']):
        model, ow_cfg = _build(cfg_path, accumulative_counts=2)
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(rec[k][0])
        ow = build_optim_wrapper(model, ow_cfg)
        ow.initialize_count_status(model, 0, 2)
        ow._updates = step  # the calibrated wrapper's update count (warm-up), as on the ranks
        single: list = []
        _record_steps(model, ow, single)
        for i in (2 * step, 2 * step + 1):
            model.train_step(pseudo_collate([samples[i]]), ow)
        assert len(single) == 1
        errs = {}
        for k, (_, g_ddp) in rec.items():
            g = single[0][k][1]
            if g_ddp is None or g is None:
                assert g is None or not g.any(), f'step {step}: {k} has a gradient only in the single process'
                continue
            errs[k] = float((g - g_ddp).norm()), float(g_ddp.norm())
        sq_err, sq_norm = sum(e**2 for e, _ in errs.values()), sum(n**2 for _, n in errs.values())
        for k, (err, norm) in errs.items():
            # Per tensor loosely: a BatchNorm gradient is a sum with cancellation (measured 1.05% at a
            # BN bias on a 2-core Xeon with AMX, 2.0% at a BN weight with channels-last convolutions:
            # 0.0046 of 0.23, where the whole gradient's norm is about 8), overall tightly below.
            assert err <= 2e-2 * norm + 1e-3 * sq_norm**0.5, \
                f'step {step}: DDP gradient != accumulated gradient at {k} (|diff| {err:.3g}, |g| {norm:.3g})'
        # Float32 summation order only: measured 1.6e-3 at step 0 with the prior-initialised heads
        # (whose small last-conv weights make the shared-feature gradient a sum with more
        # cancellation), the same with either BEV pooling path; a wrong reduction is O(1).
        assert sq_err**0.5 <= 3e-3 * sq_norm**0.5, f'step {step}: relative gradient error {(sq_err / sq_norm)**0.5:.3g}'
    # Training moved the weights (the comparison above is not between untouched models).
    assert not torch.equal(r0['params']['fuser.fuse.0.weight'], init['fuser.fuse.0.weight'])
