"""nuScenes dataset for joint 3D detection and BEV map segmentation."""

import os.path as osp

from mmdet3d.datasets import NuScenesDataset
from mmengine.fileio import load

from fuller.registry import DATASETS

from .create_infos import INFO_VERSION

CAMERA_PREFIXES = {c: f'samples/{c}' for c in ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK',
                                                 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')}


@DATASETS.register_module()
class NuScenesMultiTaskDataset(NuScenesDataset):
    """mmdet3d's nuScenes dataset plus what map segmentation needs.

    Keeps ``location``, ``ego2global`` and the LiDAR calibration in every sample (the map
    rasterizer uses them), checks that the info file is of the layout FULLER writes, and by
    default points the camera prefixes at ``samples/CAM_*``.

    Args:
        map_classes: names of the map classes (metadata for metrics and plots).
        **kwargs: passed to :class:`mmdet3d.datasets.NuScenesDataset`.
    """

    def __init__(self, map_classes: tuple = ('drivable_area', 'ped_crossing', 'walkway', 'stop_line',
                                             'carpark_area', 'divider'), **kwargs) -> None:
        self.map_classes = tuple(map_classes)
        prefix = dict(pts='samples/LIDAR_TOP', sweeps='sweeps/LIDAR_TOP', **CAMERA_PREFIXES)
        prefix.update(kwargs.pop('data_prefix', {}) or {})
        kwargs.setdefault('modality', dict(use_camera=True, use_lidar=True))
        super().__init__(data_prefix=prefix, **kwargs)
        self._metainfo['map_classes'] = self.map_classes

    def load_data_list(self) -> list[dict]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'info file not found: {self.ann_file} (create it with tools/create_data.py)')
        meta = load(self.ann_file).get('metainfo', {})
        version = meta.get('info_version')
        if version != INFO_VERSION:
            raise ValueError(f'{self.ann_file}: info_version is {version!r}, expected {INFO_VERSION!r}; '
                             f'regenerate it with tools/create_data.py')
        return super().load_data_list()

    def parse_data_info(self, info: dict) -> dict:
        info = super().parse_data_info(info)
        info.setdefault('location', info.get('location'))
        return info
