"""BEV map ground truth rasterized from the nuScenes map expansion.

Polygons and lines of each class are read once per location through the devkit's
:class:`~nuscenes.map_expansion.map_api.NuScenesMap`, moved from the global frame into the
(augmented) LiDAR frame of the sample and filled on the BEV grid, so any global
rotation/scale/flip/translation of the sample is reproduced exactly.
"""

import functools
import os.path as osp

import cv2
import numpy as np
from matplotlib.path import Path
from mmcv.transforms import BaseTransform
from nuscenes.map_expansion.map_api import NuScenesMap

from fuller.registry import TRANSFORMS
from fuller.utils.grid import bound_cells

from ..metainfo import MAP_CLASSES, MAP_LAYERS, MAP_LINE_LAYERS, MAP_POLYGON_LAYERS, map_class_layers


def class_layers(classes, layers: dict | None = None) -> dict[str, tuple[str, ...]]:
    """Map class -> the map-expansion layers it is drawn from: ``layers`` where it names the
    class, BEVFusion's rule (:func:`~fuller.datasets.metainfo.map_class_layers`) otherwise.

    Raises:
        KeyError: a layer the map expansion does not have, naming the class.
    """
    out, known = {}, MAP_POLYGON_LAYERS + MAP_LINE_LAYERS
    for cls in classes:
        names = tuple((layers or {}).get(cls) or map_class_layers(cls))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f'map class {cls!r}: unknown map-expansion layers {unknown}; known: '
                           f'{list(known)} (metainfo.map_layers)')
        out[cls] = names
    return out


class LocationMapLayers:
    """All polygons (exterior + holes) and lines of one map location, per map class, in metres.

    Args:
        dataroot: dataset root holding ``maps/expansion/{location}.json``.
        location: the map location.
        layers: map class -> map-expansion layers (:func:`class_layers`); default: the six
            classes by BEVFusion's rule (:data:`~fuller.datasets.metainfo.MAP_LAYERS`).
    """

    def __init__(self, dataroot: str, location: str, layers: dict | None = None) -> None:
        path = osp.join(dataroot, 'maps', 'expansion', f'{location}.json')
        if not osp.isfile(path):
            raise FileNotFoundError(f'map expansion file not found: {path} (needed for map segmentation)')
        nmap = NuScenesMap(dataroot=dataroot, map_name=location)
        self.polygons: dict[str, list[tuple[np.ndarray, list[np.ndarray]]]] = {}
        self.lines: dict[str, list[np.ndarray]] = {}
        for cls, names in (layers or MAP_LAYERS).items():
            polys, lines = [], []
            for layer in names:
                for rec in getattr(nmap, layer):
                    if layer in MAP_LINE_LAYERS:
                        line = nmap.extract_line(rec['line_token'])
                        if not line.is_empty:
                            lines.append(np.asarray(line.coords))
                    else:
                        tokens = rec.get('polygon_tokens') or [rec['polygon_token']]
                        for t in tokens:
                            poly = nmap.extract_polygon(t)
                            if not poly.is_empty:
                                polys.append((np.asarray(poly.exterior.coords),
                                              [np.asarray(h.coords) for h in poly.interiors]))
            self.polygons[cls] = polys
            self.lines[cls] = lines
        # per class, [n, 4] (x min, y min, x max, y max) of each exterior and line: the culling
        # of rasterize_map, once per location instead of once per polygon and sample
        self.polygon_bounds = {c: xy_bounds([ext for ext, _ in p]) for c, p in self.polygons.items()}
        self.line_bounds = {c: xy_bounds(lines) for c, lines in self.lines.items()}


def xy_bounds(items: list[np.ndarray]) -> np.ndarray:
    """[len(items), 4] (x min, y min, x max, y max) of each point array [n, >= 2]."""
    return np.array([np.r_[xy[:, :2].min(0), xy[:, :2].max(0)] for xy in items]).reshape(-1, 4)


@functools.lru_cache(maxsize=8)
def cell_centres(ny: int, nx: int) -> np.ndarray:
    """[ny, nx, 2] float64 (column j, row i) of every cell: the cell centres in pixel
    coordinates, made once per grid size (read-only)."""
    ii, jj = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing='ij')
    out = np.stack([jj, ii], -1)
    out.flags.writeable = False
    return out


def rasterize_map(geom: LocationMapLayers, global2bev: np.ndarray, xbound, ybound, line_width: float = 1.0,
                  classes: tuple = MAP_CLASSES) -> np.ndarray:
    """Rasterize one location's map classes on a BEV grid.

    Args:
        geom: the location's polygons and lines (global frame).
        global2bev: [3, 3] 2D homogeneous transform from global (x, y) to the BEV frame.
        xbound: (min, max, step) of the grid along x, m.
        ybound: (min, max, step) along y, m.
        line_width: drawn width of dividers, m.
        classes: the map classes, in output order (keys of ``geom``'s polygons and lines).

    Returns:
        uint8 [len(classes), ny, nx] masks; row i is y = ymin + (i + 0.5) * step, column
        j is x = xmin + (j + 0.5) * step. A cell belongs to a polygon when its centre does.
    """
    nx, ny = bound_cells(xbound), bound_cells(ybound)
    out = np.zeros((len(classes), ny, nx), np.uint8)
    shift = 4  # sub-pixel bits for cv2
    origin, step = np.array([xbound[0], ybound[0]], np.float64), np.array([xbound[2], ybound[2]], np.float64)

    def to_uv(xy: np.ndarray) -> np.ndarray:
        """Global (x, y) -> BEV pixel coordinates with cell centres at integers."""
        p = xy[:, :2] @ global2bev[:2, :2].T + global2bev[:2, 2]
        return (p - origin) / step - 0.5

    def to_px(xy: np.ndarray) -> np.ndarray:
        return np.round(to_uv(xy) * (1 << shift)).astype(np.int32)

    # Global-frame square that contains the grid, for culling far-away geometry.
    radius = np.hypot(xbound[1] - xbound[0], ybound[1] - ybound[0]) / 2 / np.sqrt(abs(np.linalg.det(global2bev[:2, :2])))
    center = np.linalg.solve(global2bev, np.array([(xbound[0] + xbound[1]) / 2, (ybound[0] + ybound[1]) / 2, 1.0]))

    def near(bounds: np.ndarray) -> np.ndarray:
        """Which of the [n, 4] bounds reach into the square."""
        return ~((bounds[:, :2] > center[:2] + radius) | (bounds[:, 2:] < center[:2] - radius)).any(1)

    centres = cell_centres(ny, nx)

    def fill(canvas: np.ndarray, ring: np.ndarray, value: int) -> None:
        # Exact: a cell is set when its centre lies inside the ring (cell-centre pixel coords),
        # tested for the cells of the ring's bounding window only.
        uv = to_uv(ring)
        lo, hi = np.floor(uv.min(0)), np.ceil(uv.max(0))
        j0, i0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        j1, i1 = min(int(hi[0]), nx - 1), min(int(hi[1]), ny - 1)
        if j0 > j1 or i0 > i1:
            return
        window = centres[i0: i1 + 1, j0: j1 + 1]
        inside = Path(uv).contains_points(window.reshape(-1, 2)).reshape(window.shape[:2])
        canvas[i0: i1 + 1, j0: j1 + 1][inside] = value

    for c, cls in enumerate(classes):
        canvas = out[c]
        polys, lines = geom.polygons[cls], geom.lines[cls]
        poly_bounds = getattr(geom, 'polygon_bounds', {}).get(cls)
        line_bounds = getattr(geom, 'line_bounds', {}).get(cls)
        poly_near = near(xy_bounds([ext for ext, _ in polys]) if poly_bounds is None else poly_bounds)
        line_near = near(xy_bounds(lines) if line_bounds is None else line_bounds)
        for i in np.flatnonzero(poly_near):
            ext, holes = polys[i]
            fill(canvas, ext, 1)
            for h in holes:
                fill(canvas, h, 0)
        thick = max(1, int(round(line_width / xbound[2])))
        for i in np.flatnonzero(line_near):
            line = lines[i]
            cv2.polylines(canvas, [to_px(line)], False, 1, thickness=thick, lineType=cv2.LINE_8, shift=shift)
    return out


@TRANSFORMS.register_module()
class LoadBEVMapMask(BaseTransform):
    """Add ``gt_map`` (uint8 [len(classes), ny, nx]) in the sample's augmented LiDAR frame.

    Needs ``location``, ``ego2global`` and ``lidar_points.lidar2ego`` in the info; put it
    after :class:`BEVAugmentation` so the mask follows the augmentation.

    Args:
        dataroot: dataset root holding ``maps/expansion``.
        xbound: (min, max, step) of the map grid along x, m.
        ybound: (min, max, step) along y, m.
        line_width: divider width, m.
        classes: map classes in output order (the dataset fills its ``metainfo['map_classes']``).
        layers: map class -> map-expansion layers it is drawn from, for classes defined otherwise
            than by BEVFusion's rule (``drivable_area``: the ``drivable_area`` layer; ``divider``:
            road and lane dividers; others: their own layer); the dataset fills its
            ``metainfo['map_layers']``.
    """

    def __init__(self, dataroot: str, xbound=(-50.0, 50.0, 0.5), ybound=(-50.0, 50.0, 0.5),
                 line_width: float = 1.0, classes: tuple = MAP_CLASSES, layers: dict | None = None) -> None:
        try:
            self.layers = class_layers(classes, layers)
        except KeyError as e:
            raise KeyError(f'LoadBEVMapMask: {e.args[0]}') from None
        self.classes = tuple(classes)
        self.dataroot = dataroot
        self.xbound = tuple(xbound)
        self.ybound = tuple(ybound)
        self.line_width = line_width
        self._cache: dict[str, LocationMapLayers] = {}

    def map_layers(self, location: str) -> LocationMapLayers:
        if location not in self._cache:
            self._cache[location] = LocationMapLayers(self.dataroot, location, self.layers)
        return self._cache[location]

    def transform(self, results: dict) -> dict:
        if not results.get('location'):
            raise KeyError(f'sample {results.get("token", "?")}: info has no "location"; regenerate the info '
                           f'file with tools/create_data.py to train map segmentation')
        ego2global = np.asarray(results['ego2global'])
        lidar2global = ego2global @ np.asarray(results['lidar_points']['lidar2ego'])
        aug = np.asarray(results.get('lidar_aug_matrix', np.eye(4)))
        g2b = aug @ np.linalg.inv(lidar2global)
        # 2D part, for map points at the height of the ground under the ego (the map is planar).
        m = np.eye(3)
        m[:2, :2] = g2b[:2, :2]
        m[:2, 2] = g2b[:2, 3] + g2b[:2, 2] * ego2global[2, 3]
        results['gt_map'] = rasterize_map(self.map_layers(results['location']), m, self.xbound, self.ybound,
                                          self.line_width, self.classes)
        return results
