from .config import (
           add_checkpoint_args,
           add_info_file_args,
           apply_variant,
           explain_registry_error,
           finish_distributed,
           keep_submission_files,
           load_config,
           parse_launcher_args,
           read_config,
           resolve_config,
           same_value,
           set_data_root,
)
from .quiet import quiet_third_party_warnings
from .report import cpu_model, format_metrics_table

__all__ = ['add_checkpoint_args', 'add_info_file_args', 'apply_variant', 'cpu_model', 'explain_registry_error',
           'finish_distributed', 'format_metrics_table', 'keep_submission_files', 'load_config', 'parse_launcher_args',
           'quiet_third_party_warnings', 'read_config', 'resolve_config', 'same_value', 'set_data_root']
