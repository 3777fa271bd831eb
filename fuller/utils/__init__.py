"""Leaf helpers: command-line flags, grid arithmetic, atomic files, quiet start-up, report tables. Nothing here
imports another FULLER package (config resolution lives in :mod:`fuller.engine.config`)."""

from .cli import add_checkpoint_args, add_info_file_args, finish_distributed, freeze_imports, parse_launcher_args
from .grid import bev_cell, bound_cells, grid_shape, same_value
from .io import write_json_atomic
from .quiet import quiet_third_party_warnings
from .report import auto_precision, cpu_flags, cpu_model, format_metrics_table, usable_cpus

__all__ = ['add_checkpoint_args', 'add_info_file_args', 'auto_precision', 'bev_cell', 'bound_cells', 'cpu_flags',
           'cpu_model', 'finish_distributed', 'format_metrics_table', 'freeze_imports', 'grid_shape', 'parse_launcher_args',
           'quiet_third_party_warnings', 'same_value', 'usable_cpus', 'write_json_atomic']
