from .config import load_config, parse_launcher_args, set_data_root
from .report import format_metrics_table

__all__ = ['format_metrics_table', 'load_config', 'parse_launcher_args', 'set_data_root']
