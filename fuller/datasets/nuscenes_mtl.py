"""nuScenes dataset for joint 3D detection and BEV map segmentation."""

import os.path as osp

from mmdet3d.datasets import NuScenesDataset
from mmengine.logging import MMLogger

from fuller.registry import DATASETS
from fuller.utils.grid import same_value

from .create_infos import INFO_VERSION
from .info_io import UnsafeInfoFileError, load_info_file
from .metainfo import NUSCENES_METAINFO
from .transforms.loading import DataFileError

# The arguments of pipeline steps that the dataset fills from its geometry and metainfo: step
# type -> {argument: fact}. A fact is a key of the metainfo, of the geometry (dotted for nested
# keys) or 'data_root'. A step that leaves the argument out gets the fact; one that sets it to
# another value is an error naming the step, so nothing is synced by hand.
PIPELINE_FACTS = {
    'LoadMultiViewImages': {'cameras': 'cameras'},
    'ImageAug3D': {'final_dim': 'image_size'},
    'LoadBEVMapMask': {'dataroot': 'data_root', 'xbound': 'map_bound.xbound', 'ybound': 'map_bound.ybound',
                       'classes': 'map_classes', 'layers': 'map_layers'},
    'ObjectRangeFilter': {'point_cloud_range': 'point_cloud_range'},
    'PointsRangeFilter': {'point_cloud_range': 'point_cloud_range'},
    'ObjectNameFilter': {'classes': 'classes'},
    'ObjectPaste': {'data_root': 'data_root', 'classes': 'classes'},
}


def _same_path(a, b) -> bool:
    """Two spellings of one directory (``/x`` and ``/x/``, ``a/../x``) are the same path."""
    return isinstance(a, str) and isinstance(b, str) and osp.normpath(a) == osp.normpath(b)


def fill_pipeline(pipeline: list, facts: dict, where: str = 'pipeline') -> list:
    """A copy of ``pipeline`` (a list of step configs) with the arguments of
    :data:`PIPELINE_FACTS` filled from ``facts``; a step setting one to another value raises
    naming it. Facts missing from ``facts`` are left to the step's own default."""
    out = []
    for i, step in enumerate(pipeline):
        if not isinstance(step, dict):
            out.append(step)
            continue
        step = dict(step)
        for arg, fact in PIPELINE_FACTS.get(str(step.get('type', '')).split('.')[-1], {}).items():
            value = facts
            for k in fact.split('.'):
                value = value.get(k) if isinstance(value, dict) else None
            if value is None:
                continue
            same = same_value if fact != 'data_root' else _same_path
            if arg in step and not same(step[arg], value):
                raise ValueError(f'{where}[{i}] ({step["type"]}).{arg} = {step[arg]!r} but the {fact} is {value!r}; '
                                 f'state it once (geometry / metainfo of the config) and leave {arg} out')
            step[arg] = list(value) if isinstance(value, tuple) else value
        out.append(step)
    return out


@DATASETS.register_module()
class NuScenesMultiTaskDataset(NuScenesDataset):
    """mmdet3d's nuScenes dataset plus what map segmentation needs.

    Keeps ``location``, ``ego2global`` and the LiDAR calibration in every sample (the map
    rasterizer uses them), checks that the info file is of the layout FULLER writes, and by
    default points the camera prefixes at ``samples/CAM_*``.

    Its ``METAINFO`` holds every dataset fact (:mod:`fuller.datasets.metainfo`: detection
    classes, map classes, cameras, category mapping, attribute conventions); ``metainfo``
    overrides any of them. Metrics and hooks read them through ``dataset_meta``.

    Args:
        geometry: the grid of the setup (``point_cloud_range``, ``image_size``, ``map_bound``,
            ...), stated once at the top level of a config. The dataset fills its pipeline's
            steps from it and from the metainfo (:data:`PIPELINE_FACTS`).
        on_bad_sample: ``'error'`` (default): a missing or corrupt point cloud or image raises
            :class:`DataFileError` naming the file. ``'skip'``: in training, the sample is
            logged, counted (``bad_samples``, per worker process) and replaced by another
            random one (mmengine's refetch, at most ``max_refetch`` times in a row);
            evaluation never skips, since every sample must be scored.
        trust_info_file: read ``ann_file`` with the full unpickler. By default it is read with
            one that admits only plain data and numpy arrays (:mod:`fuller.datasets.info_io`),
            so an info file from elsewhere cannot run code; set this (``--trust-info-files``)
            only for a file from a trusted source that holds other objects.
        check_files: before any sample is loaded, check that the map-expansion file of every
            location in the split exists (when the pipeline rasterizes maps) and that the point
            cloud and images of the first ``check_files`` samples exist, so that a wrong
            ``data_root`` or a missing download stops the run at once with the path (0: skip).
        **kwargs: passed to :class:`mmdet3d.datasets.NuScenesDataset`.
    """

    METAINFO = {**NuScenesDataset.METAINFO, **NUSCENES_METAINFO}

    def __init__(self, geometry: dict | None = None, on_bad_sample: str = 'error', trust_info_file: bool = False,
                 check_files: int = 4, **kwargs) -> None:
        if on_bad_sample not in ('error', 'skip'):
            raise ValueError(f"dataset on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.on_bad_sample = on_bad_sample
        self.trust_info_file = bool(trust_info_file)
        self.bad_samples: list[str] = []
        self.check_files = int(check_files)
        self._locations: set = set()
        self.geometry = dict(geometry or {})
        meta = self._load_metainfo(kwargs.get('metainfo'))
        for key in ('classes', 'map_classes', 'cameras'):
            unknown = [c for c in meta[key] if c not in self.METAINFO[key]]
            if unknown:
                raise KeyError(f'dataset metainfo.{key} has names {unknown} that nuScenes does not have '
                               f'({list(self.METAINFO[key])})')
        facts = {**meta, **self.geometry, 'data_root': kwargs.get('data_root')}
        kwargs['pipeline'] = fill_pipeline(kwargs.get('pipeline') or [], facts, 'dataset.pipeline')
        for step in kwargs['pipeline']:  # the GT database index is read under the info files' rule
            if isinstance(step, dict) and str(step.get('type', '')).split('.')[-1] == 'ObjectPaste':
                step.setdefault('trust_info_file', self.trust_info_file)
        prefix = dict(pts='samples/LIDAR_TOP', sweeps='sweeps/LIDAR_TOP', **{c: f'samples/{c}' for c in meta['cameras']})
        prefix.update(kwargs.pop('data_prefix', {}) or {})
        kwargs.setdefault('modality', dict(use_camera=True, use_lidar=True))
        super().__init__(data_prefix=prefix, **kwargs)
        self.map_classes = tuple(self.metainfo['map_classes'])
        if self.check_files and getattr(self, '_fully_initialized', True):
            self.check_input_files(self.check_files)

    def check_input_files(self, first: int = 4) -> None:
        """The cheap checks of ``check_files``: map-expansion files of every location in the split
        and the data files of the first ``first`` samples.

        Raises:
            FileNotFoundError: naming the missing file, the info file and what to check.
        """
        roots = {t.dataroot for t in getattr(self.pipeline, 'transforms', ()) if type(t).__name__ == 'LoadBEVMapMask'}
        for root in sorted(roots):
            for loc in sorted(self._locations):
                path = osp.join(root, 'maps', 'expansion', f'{loc}.json')
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f'map expansion file not found: {path} (the samples of {self.ann_file} at {loc} need it for '
                        'map segmentation; the nuScenes map expansion goes under <data_root>/maps/expansion/)')
        missing = []
        for i in range(min(first, len(self))):
            info = self.get_data_info(i)
            paths = [info.get('lidar_points', {}).get('lidar_path')] if self.modality.get('use_lidar') else []
            if self.modality.get('use_camera'):
                paths += [cam.get('img_path') for cam in info.get('images', {}).values()]
            missing += [(i, p) for p in paths if p and not osp.isfile(p)][:1]
        # on_bad_sample='skip' tolerates a missing file, not a split none of whose first samples can load
        if missing and (self.on_bad_sample != 'skip' or self.test_mode or len(missing) == min(first, len(self))):
            i, path = missing[0]
            raise FileNotFoundError(
                f'data file not found: {path} (sample {i} of {self.ann_file}; is data_root {self.data_root!r} the '
                'root the info file was made for, with samples/ and sweeps/?)')

    def load_data_list(self) -> list[dict]:
        """mmengine's ``BaseDataset.load_data_list`` with the info file read safely
        (:func:`~fuller.datasets.info_io.load_info_file`) and checked for FULLER's layout."""
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'info file not found: {self.ann_file} (create it with tools/create_data.py)')
        try:
            data = load_info_file(self.ann_file, trusted=self.trust_info_file)
        except UnsafeInfoFileError:
            raise
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
        for k, v in meta.items():  # as mmengine: the file's metainfo never overrides METAINFO / metainfo=
            self._metainfo.setdefault(k, v)
        data_list = []
        for raw in data['data_list']:
            if raw.get('location'):
                self._locations.add(raw['location'])
            info = self.parse_data_info(raw)
            if isinstance(info, dict):
                data_list.append(info)
            elif isinstance(info, list):
                data_list.extend(info)
            else:
                raise TypeError(f'{self.ann_file}: parse_data_info gave {type(info).__name__}, not a dict or list')
        return data_list

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

