"""nuScenes dataset for joint 3D detection and BEV map segmentation."""

import os.path as osp

from mmdet3d.datasets import NuScenesDataset
from mmengine.fileio import load
from mmengine.logging import MMLogger

from fuller.registry import DATASETS

from .create_infos import INFO_VERSION
from .transforms.loading import DataFileError

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
        on_bad_sample: ``'error'`` (default): a missing or corrupt point cloud or image raises
            :class:`DataFileError` naming the file. ``'skip'``: in training, the sample is
            logged, counted (``bad_samples``, per worker process) and replaced by another
            random one (mmengine's refetch, at most ``max_refetch`` times in a row);
            evaluation never skips, since every sample must be scored.
        **kwargs: passed to :class:`mmdet3d.datasets.NuScenesDataset`.
    """

    def __init__(self, map_classes: tuple = ('drivable_area', 'ped_crossing', 'walkway', 'stop_line',
                                             'carpark_area', 'divider'), on_bad_sample: str = 'error',
                 **kwargs) -> None:
        if on_bad_sample not in ('error', 'skip'):
            raise ValueError(f"dataset on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.on_bad_sample = on_bad_sample
        self.bad_samples: list[str] = []
        self.map_classes = tuple(map_classes)
        prefix = dict(pts='samples/LIDAR_TOP', sweeps='sweeps/LIDAR_TOP', **CAMERA_PREFIXES)
        prefix.update(kwargs.pop('data_prefix', {}) or {})
        kwargs.setdefault('modality', dict(use_camera=True, use_lidar=True))
        super().__init__(data_prefix=prefix, **kwargs)
        self._metainfo['map_classes'] = self.map_classes

    def load_data_list(self) -> list[dict]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'info file not found: {self.ann_file} (create it with tools/create_data.py)')
        try:
            data = load(self.ann_file)
        except Exception as e:  # noqa: BLE001 - pickle/unicode/EOF errors, reported with the file
            raise ValueError(f'corrupt info file {self.ann_file}: {type(e).__name__}: {e}; regenerate it with '
                             'tools/create_data.py') from e
        if not isinstance(data, dict) or 'data_list' not in data:
            raise ValueError(f'{self.ann_file} is not a FULLER/mmdet3d info file (no data_list); regenerate it '
                             'with tools/create_data.py')
        meta = data.get('metainfo', {})
        version = meta.get('info_version')
        if version != INFO_VERSION:
            raise ValueError(f'{self.ann_file}: info_version is {version!r}, expected {INFO_VERSION!r}; '
                             f'regenerate it with tools/create_data.py')
        return super().load_data_list()

    def prepare_data(self, index: int):
        try:
            return super().prepare_data(index)
        except DataFileError as e:
            if self.on_bad_sample != 'skip' or self.test_mode:
                raise
            self.bad_samples.append(str(e))
            MMLogger.get_current_instance().warning(
                f'skipping sample {index} ({len(self.bad_samples)} skipped in this process): {e}')
            return None

