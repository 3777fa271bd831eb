from .amp import AmpTestLoop, AmpValLoop, resolve_amp
from .checkpoint_hook import FullerCheckpointHook, SafeCheckpointHook
from .checkpoint_io import (
                            AtomicLocalBackend,
                            CheckpointLoadError,
                            CheckpointMismatchError,
                            CheckpointSaveError,
                            extract_state_dict,
                            find_latest_good_checkpoint,
                            load_checkpoint_file,
                            match_state_dict,
                            wait_for_checkpoint_writes,
)
from .config import (
                            apply_variant,
                            base_dataset,
                            check_cfg_options,
                            drop_pretrained,
                            explain_registry_error,
                            keep_submission_files,
                            load_config,
                            pretrained_files,
                            read_config,
                            resolve_config,
                            set_data_root,
)
from .ddp import FullerDistributedDataParallel
from .hooks import BEVVisualizationHook, CurvesHook, PipelineEpochHook, ProgressBarHook
from .lock import WorkDirInUseError, work_dir_lock
from .optim_wrapper import CalibratedOptimWrapper, GuardedOptimWrapper
from .runner import FullerRunner, reported_as_exit

__all__ = ['apply_variant', 'base_dataset', 'check_cfg_options', 'drop_pretrained', 'explain_registry_error',
           'keep_submission_files', 'load_config', 'pretrained_files', 'read_config', 'resolve_config', 'set_data_root',
           'AmpTestLoop', 'AmpValLoop', 'AtomicLocalBackend', 'BEVVisualizationHook', 'CalibratedOptimWrapper',
           'CheckpointLoadError', 'CheckpointMismatchError', 'CheckpointSaveError', 'CurvesHook',
           'FullerCheckpointHook', 'FullerDistributedDataParallel',
           'FullerRunner', 'GuardedOptimWrapper', 'PipelineEpochHook', 'ProgressBarHook', 'SafeCheckpointHook',
           'extract_state_dict',
           'find_latest_good_checkpoint', 'load_checkpoint_file', 'match_state_dict', 'reported_as_exit', 'resolve_amp',
           'wait_for_checkpoint_writes', 'WorkDirInUseError', 'work_dir_lock']
