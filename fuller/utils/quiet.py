"""Quiet start-up for the command-line tools: third-party warnings a user cannot act on."""

import logging
import os
import sys
import warnings

_PACKAGES = ('spconv', 'cumm', 'mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'numba', 'torch', 'nuscenes',
             'pyquaternion', 'matplotlib', 'tensorboard', 'google.protobuf', 'shapely', 'timm')


def is_registry_noise(msg: str) -> bool:
    """mmengine's registry-scope fallback notices (the lookup then succeeds in a parent scope)."""
    return msg.startswith('Failed to search registry with scope') or (
        'did not set import location' in msg and 'registry' in msg)


class _RegistryNoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_registry_noise(record.getMessage())


def quiet_third_party_warnings() -> None:
    """Silence third-party start-up warnings in a command-line tool's process.

    Called by the entry points only (``tools/*.py``), never on import of the library:
    deprecation and future warnings raised inside third-party packages (spconv/cumm's
    ``torch.cuda.amp`` notices, mmengine/mmcv/mmdet/mmdet3d deprecations), user warnings that
    mmengine/mmcv/mmdet/mmdet3d/spconv raise about their own internals, and mmengine's registry-scope fallback notices.
    Warnings raised by FULLER's code or by the user's still show; ``FULLER_SHOW_WARNINGS=1``
    shows everything.
    """
    if os.environ.get('FULLER_SHOW_WARNINGS'):
        return
    for pkg in _PACKAGES:
        for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings('ignore', category=category, module=rf'{pkg}(\.|$)')
    for pkg in ('mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'spconv', 'cumm'):
        warnings.filterwarnings('ignore', category=UserWarning, module=rf'{pkg}(\.|$)')
    # torch.fx's "is_fx_tracing will return true ..." notice, printed when mmdet checks for tracing.
    logging.getLogger('torch.fx._symbolic_trace').setLevel(logging.ERROR)
    if not sys.stderr.isatty():
        # Bars of third-party loops (e.g. the nuScenes devkit's) fill log files with carriage
        # returns; tqdm reads this when it is imported, so this runs before any import of it.
        os.environ.setdefault('TQDM_DISABLE', '1')
    from mmengine.logging import MMLogger

    mm = MMLogger.get_instance('mmengine')
    if not any(isinstance(f, _RegistryNoiseFilter) for f in mm.filters):
        mm.addFilter(_RegistryNoiseFilter())
