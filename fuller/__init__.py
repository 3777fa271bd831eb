"""FULLER: multi-modality multi-task 3D perception with multi-level gradient calibration."""

from fuller._spconv_cache import install as _install_spconv_cache

__version__ = '0.1.0'

_install_spconv_cache()  # spconv's import-time kernel descriptions from a disk cache (see the module)
