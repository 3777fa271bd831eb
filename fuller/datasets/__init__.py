from .cbgs import CBGSDataset
from .nuscenes_mtl import NuScenesMultiTaskDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['CBGSDataset', 'NuScenesMultiTaskDataset']
