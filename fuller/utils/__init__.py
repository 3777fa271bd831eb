from .config import (
           add_checkpoint_args,
           explain_registry_error,
           finish_distributed,
           load_config,
           parse_launcher_args,
           set_data_root,
)
from .quiet import quiet_third_party_warnings
from .report import format_metrics_table

__all__ = ['add_checkpoint_args', 'explain_registry_error', 'finish_distributed', 'format_metrics_table',
           'load_config', 'parse_launcher_args', 'quiet_third_party_warnings', 'set_data_root']
