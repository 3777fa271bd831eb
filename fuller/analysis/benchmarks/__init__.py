"""The benchmarks behind ``tools/benchmark.py``, one module per sub-command (results under
``docs/benchmarks/``)."""

from .data import bench_data
from .pooling import bench_bevpool, bench_vtransform
from .step import RULES, bench_step
from .train import bench_train

__all__ = ['RULES', 'bench_bevpool', 'bench_data', 'bench_step', 'bench_train', 'bench_vtransform']
