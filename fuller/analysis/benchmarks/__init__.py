"""The benchmarks behind ``tools/benchmark.py``, one module per sub-command (results under
``docs/benchmarks/``)."""

from .data import bench_data
from .modules import BEVFUSION_DET_CONFIG, DEFAULT_MODULES, bench_modules
from .pooling import bench_bevpool, bench_vtransform
from .step import RULES, bench_step
from .train import bench_train

__all__ = ['BEVFUSION_DET_CONFIG', 'DEFAULT_MODULES', 'RULES', 'bench_bevpool', 'bench_data', 'bench_modules', 'bench_step',
           'bench_train', 'bench_vtransform']
