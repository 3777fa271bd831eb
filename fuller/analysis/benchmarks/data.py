"""``benchmark.py data``: training pipeline samples/s per worker."""

import os.path as osp
import statistics
import time

import numpy as np
import torch

from .common import machine_info, write_results


def bench_data(args) -> None:
    from mmengine.registry import init_default_scope

    from fuller.engine import base_dataset, read_config
    from fuller.registry import DATASETS

    cfg = read_config(args.config)
    init_default_scope('fuller')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(0)
    for i in range(args.warmup):
        dataset[i % len(dataset)]
    per = []
    for i in range(args.iters):
        t0 = time.perf_counter()
        dataset[(args.warmup + i) % len(dataset)]
        per.append(time.perf_counter() - t0)
    med = statistics.median(per)
    rows = [[osp.basename(args.config), len(dataset), 1000 * statistics.mean(per), 1000 * med, 1 / med]]
    write_results(args.out, args.name or 'data', 'Training data pipeline, one worker', machine_info(torch.device('cpu')),
                  {'config': args.config, 'data_root': base_dataset(cfg.train_dataloader.dataset).data_root,
                   'warmup': args.warmup, 'iters': args.iters},
                  ['config', 'samples in split', 'mean ms/sample', 'median ms/sample', 'samples/s/worker'], rows,
                  'One worker process = one pipeline; with `num_workers=k` the loader delivers about k times '
                  'this rate while CPU cores are free. Size `num_workers` so that k x samples/s exceeds the '
                  'training step rate times the batch size.')
