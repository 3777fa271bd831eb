"""Procedural road network of one map location, written as a nuScenes map expansion.

The world is a grid of axis-aligned two-way roads over a square canvas. From it we derive
every map layer FULLER segments (drivable area as road segments + lanes, pedestrian
crossings, walkways, stop lines, car parks, road and lane dividers) both as nuScenes
map-expansion records (nodes, polygons, lines) and as a label raster used by the sensor
simulation (camera colours; LiDAR surface heights and reflectivity).
"""

from dataclasses import dataclass, field

import cv2
import numpy as np
from shapely.geometry import LineString, Polygon, box
from shapely.ops import unary_union

from .tokens import TokenFactory

# Label raster codes, in painting order (later codes overwrite earlier ones).
GROUND, DRIVABLE, WALKWAY, CARPARK, PED_CROSSING, STOP_LINE, DIVIDER = range(7)

LANE_WIDTH = 3.5
WALKWAY_WIDTH = 3.0
CROSSING_DEPTH = 4.0
STOP_LINE_DEPTH = 3.0  # the stop area before the line, as nuScenes' stop_line polygons
DIVIDER_WIDTH = 0.3
# Walkways are raised by a kerb; roads, car parks and verges lie at z = 0.
KERB_HEIGHT = 0.15
# Ground reflectivity varies in patches a few metres across (wear, patching, moisture, grass
# cover), by a factor of about exp(+-REFLECTIVITY_PATCH_SIGMA); see :meth:`World.patch_factor`.
REFLECTIVITY_PATCH_CELL = 1.0
REFLECTIVITY_PATCH_SCALE = 4.0
REFLECTIVITY_PATCH_SIGMA = 0.35


@dataclass
class Road:
    """A straight two-way road spanning the canvas.

    Attributes:
        axis: 0 for a road along x (constant y), 1 for a road along y (constant x).
        center: the constant coordinate of its centre line (m).
        lanes: lanes per direction.
    """

    axis: int
    center: float
    lanes: int

    @property
    def half_width(self) -> float:
        return self.lanes * LANE_WIDTH


@dataclass
class World:
    """One location's map: roads, derived layer geometry and a label raster."""

    name: str
    size: float
    roads: list[Road]
    layers: dict[str, list] = field(default_factory=dict)  # layer -> shapely geometries
    raster: np.ndarray | None = None  # uint8 [H, W] label codes, row = y, col = x
    resolution: float = 0.2
    patches: np.ndarray | None = None  # float32 [H', W'] log reflectivity variation, row = y

    def label_at(self, xy: np.ndarray) -> np.ndarray:
        """Label code of the ground at global positions ``xy`` ([N, 2], m)."""
        ij = np.floor(xy / self.resolution).astype(np.int64)
        h, w = self.raster.shape
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        out = np.full(len(xy), GROUND, np.uint8)
        out[inside] = self.raster[ij[inside, 1], ij[inside, 0]]
        return out

    def height_at(self, codes: np.ndarray) -> np.ndarray:
        """Surface height (m) of ground with label ``codes``: the kerb's on walkways, else 0."""
        return np.where(codes == WALKWAY, KERB_HEIGHT, 0.0)

    def patch_factor(self, xy: np.ndarray) -> np.ndarray:
        """Multiplicative reflectivity variation of the ground at ``xy`` ([N, 2], m): smooth
        log-normal patches of a few metres, the same for every sensor and sweep."""
        ij = np.floor(xy / REFLECTIVITY_PATCH_CELL).astype(np.int64)
        h, w = self.patches.shape
        return np.exp(self.patches[np.clip(ij[:, 1], 0, h - 1), np.clip(ij[:, 0], 0, w - 1)])

    def roads_along(self, axis: int) -> list[Road]:
        return [r for r in self.roads if r.axis == axis]


def _strip(road: Road, lo: float, hi: float, size: float) -> Polygon:
    """Axis-aligned strip at signed offsets [lo, hi] from a road's centre line."""
    if road.axis == 0:
        return box(0.0, road.center + lo, size, road.center + hi)
    return box(road.center + lo, 0.0, road.center + hi, size)


def build_world(name: str, rng: np.random.Generator, size: float = 600.0) -> World:
    """Lay out a road grid and derive all map layers.

    Args:
        name: map location name (e.g. ``'singapore-onenorth'``).
        rng: random generator; the layout is a deterministic function of its state.
        size: side of the square canvas in metres.

    Returns:
        The world with ``layers`` and ``raster`` filled.
    """
    roads = []
    for axis in (0, 1):
        base = np.arange(90.0, size - 60.0, 150.0)
        for c in base + rng.uniform(-20, 20, len(base)):
            roads.append(Road(axis, float(c), int(rng.integers(1, 3))))
    world = World(name, size, roads)

    road_polys = [_strip(r, -r.half_width, r.half_width, size) for r in roads]
    roads_union = unary_union(road_polys)
    intersections = []
    for a in world.roads_along(0):
        for b in world.roads_along(1):
            intersections.append(
                box(b.center - b.half_width, a.center - a.half_width, b.center + b.half_width, a.center + a.half_width)
            )
    inter_union = unary_union(intersections)

    # Road segments: road pieces between intersections plus the intersections themselves.
    segments = [g for p in road_polys for g in _parts(p.difference(inter_union))] + intersections
    lanes, road_dividers, lane_dividers = [], [], []
    for r in roads:
        for k in range(-r.lanes, r.lanes):
            lane = _strip(r, k * LANE_WIDTH, (k + 1) * LANE_WIDTH, size)
            lanes.extend(_parts(lane.difference(inter_union)))
        for k in range(-r.lanes + 1, r.lanes):
            line = (
                LineString([(0, r.center + k * LANE_WIDTH), (size, r.center + k * LANE_WIDTH)])
                if r.axis == 0
                else LineString([(r.center + k * LANE_WIDTH, 0), (r.center + k * LANE_WIDTH, size)])
            )
            pieces = _parts(line.difference(inter_union.buffer(CROSSING_DEPTH + 0.5)))
            (road_dividers if k == 0 else lane_dividers).extend(pieces)

    crossings, stop_lines = [], []
    for a in world.roads_along(0):
        for b in world.roads_along(1):
            x0, x1 = b.center - b.half_width, b.center + b.half_width
            y0, y1 = a.center - a.half_width, a.center + a.half_width
            # Crossings over road a (left/right of the intersection) and road b (below/above).
            crossings += [
                box(x0 - CROSSING_DEPTH, y0, x0, y1),
                box(x1, y0, x1 + CROSSING_DEPTH, y1),
                box(x0, y0 - CROSSING_DEPTH, x1, y0),
                box(x0, y1, x1, y1 + CROSSING_DEPTH),
            ]
            # Stop lines on the incoming (right-hand) half of each approach.
            d, s = CROSSING_DEPTH, STOP_LINE_DEPTH
            stop_lines += [
                box(x0 - d - s, a.center - a.half_width, x0 - d, a.center),
                box(x1 + d, a.center, x1 + d + s, a.center + a.half_width),
                box(b.center, y0 - d - s, b.center + b.half_width, y0 - d),
                box(b.center - b.half_width, y1 + d, b.center, y1 + d + s),
            ]

    walk = unary_union(
        [_strip(r, -r.half_width - WALKWAY_WIDTH, -r.half_width, size) for r in roads]
        + [_strip(r, r.half_width, r.half_width + WALKWAY_WIDTH, size) for r in roads]
    ).difference(roads_union)
    walkways = _parts(walk)

    # Car parks: rectangles in the blocks, touching a walkway, four along each road.
    carparks = []
    for a in roads:
        for _ in range(4):
            c = float(rng.uniform(40, size - 40))
            side = 1 if rng.random() < 0.5 else -1
            edge = a.center + side * (a.half_width + WALKWAY_WIDTH)
            depth = float(rng.uniform(18, 30))
            lo, hi = min(edge, edge + side * depth), max(edge, edge + side * depth)
            cp = box(c - 20, lo, c + 20, hi) if a.axis == 0 else box(lo, c - 20, hi, c + 20)
            cp = cp.difference(roads_union.buffer(WALKWAY_WIDTH))
            carparks.extend(p for p in _parts(cp) if p.area > 100)
    # An entry from the road into each car park keeps them drivable and reachable.
    drivable = unary_union([roads_union] + carparks)

    world.layers = {
        'drivable_area': _parts(drivable),
        'road_segment': segments,
        'lane': lanes,
        'ped_crossing': crossings,
        'walkway': walkways,
        'stop_line': stop_lines,
        'carpark_area': carparks,
        'road_divider': road_dividers,
        'lane_divider': lane_dividers,
    }
    world.raster = rasterize_labels(world)
    world.patches = reflectivity_patches(size, rng)
    return world


def add_parking_lot(world: World, rng: np.random.Generator, length: float = 70.0, depth: float = 40.0) -> Polygon:
    """Add one large car park (a supermarket's or a housing estate's, where nuScenes' "Parking lot"
    scenes drive) to ``world``: a ``length`` x ``depth`` m rectangle in a block, behind the walkway
    of one of its roads, clipped to the block. The lot joins ``carpark_area`` (merged with any
    roadside car park it overlaps) and the drivable area, and the raster is painted again.

    Returns:
        The lot's rectangle (before merging), for routes through it.
    """
    road = world.roads[rng.integers(len(world.roads))]
    cross = sorted(world.roads_along(1 - road.axis), key=lambda r: r.center)
    # A block between two consecutive crossing roads (not the canvas' edge strips).
    j = int(rng.integers(len(cross) - 1))
    lo_road, hi_road = cross[j], cross[j + 1]
    s_lo = lo_road.center + lo_road.half_width + WALKWAY_WIDTH + 2.0
    s_hi = hi_road.center - hi_road.half_width - WALKWAY_WIDTH - 2.0
    length = min(length, s_hi - s_lo)
    s0 = float(rng.uniform(s_lo, s_hi - length))
    side = 1 if rng.random() < 0.5 else -1
    edge = road.center + side * (road.half_width + WALKWAY_WIDTH)
    parallel = [r.center for r in world.roads_along(road.axis) if (r.center - road.center) * side > 0]
    room = (min(abs(c - road.center) for c in parallel) - 2 * (road.half_width + WALKWAY_WIDTH) - 4.0
            if parallel else world.size)
    depth = min(depth, room, (world.size - edge) if side > 0 else edge)
    a, b = sorted((edge, edge + side * depth))
    lot = box(s0, a, s0 + length, b) if road.axis == 0 else box(a, s0, b, s0 + length)
    roads_union = unary_union([_strip(r, -r.half_width, r.half_width, world.size) for r in world.roads])
    lot = lot.difference(roads_union.buffer(WALKWAY_WIDTH))
    L = world.layers
    L['carpark_area'] = _parts(unary_union(L['carpark_area'] + [lot]))
    L['drivable_area'] = _parts(unary_union(L['drivable_area'] + [lot]))
    world.raster = rasterize_labels(world)
    return lot


def reflectivity_patches(size: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise over the canvas, normalised to std REFLECTIVITY_PATCH_SIGMA."""
    n = int(np.ceil(size / REFLECTIVITY_PATCH_CELL))
    noise = rng.standard_normal((n, n)).astype(np.float32)
    field = cv2.GaussianBlur(noise, (0, 0), REFLECTIVITY_PATCH_SCALE / REFLECTIVITY_PATCH_CELL,
                             borderType=cv2.BORDER_REFLECT)
    return field * np.float32(REFLECTIVITY_PATCH_SIGMA / (field.std() + 1e-12))


def _parts(geom) -> list:
    """Split a (multi-)geometry into its non-empty simple parts."""
    if geom.is_empty:
        return []
    if hasattr(geom, 'geoms'):
        return [g for g in geom.geoms if not g.is_empty and g.geom_type in ('Polygon', 'LineString')]
    return [geom]


def _fill(img: np.ndarray, poly: Polygon, value: int, res: float) -> None:
    ext = np.round(np.asarray(poly.exterior.coords) / res).astype(np.int32)
    cv2.fillPoly(img, [ext], value)
    for hole in poly.interiors:
        cv2.fillPoly(img, [np.round(np.asarray(hole.coords) / res).astype(np.int32)], GROUND)


def rasterize_labels(world: World) -> np.ndarray:
    """Paint the label raster (row = y, col = x) in layer priority order."""
    n = int(round(world.size / world.resolution))
    img = np.zeros((n, n), np.uint8)
    res = world.resolution
    for poly in world.layers['drivable_area']:
        _fill(img, poly, DRIVABLE, res)
    for layer, code in (('walkway', WALKWAY), ('carpark_area', CARPARK), ('ped_crossing', PED_CROSSING),
                        ('stop_line', STOP_LINE)):
        for poly in world.layers[layer]:
            _fill(img, poly, code, res)
    thick = max(1, int(round(DIVIDER_WIDTH / res)))
    for layer in ('road_divider', 'lane_divider'):
        for line in world.layers[layer]:
            pts = np.round(np.asarray(line.coords) / res).astype(np.int32)
            cv2.polylines(img, [pts], False, DIVIDER, thickness=thick)
    return img


def map_expansion_json(world: World, tokens: TokenFactory) -> dict:
    """Serialize the world as a nuScenes map-expansion (v1.3) JSON object."""
    nodes, polygons, lines = [], [], []

    def add_nodes(coords) -> list[str]:
        toks = []
        for x, y in coords:
            t = tokens()
            nodes.append({'token': t, 'x': float(x), 'y': float(y)})
            toks.append(t)
        return toks

    def add_polygon(poly: Polygon) -> str:
        t = tokens()
        polygons.append({
            'token': t,
            'exterior_node_tokens': add_nodes(list(poly.exterior.coords)[:-1]),
            'holes': [{'node_tokens': add_nodes(list(h.coords)[:-1])} for h in poly.interiors],
        })
        return t

    def add_line(line: LineString) -> str:
        t = tokens()
        lines.append({'token': t, 'node_tokens': add_nodes(list(line.coords))})
        return t

    L = world.layers
    drivable = [{'token': tokens(), 'polygon_tokens': [add_polygon(p) for p in L['drivable_area']]}]
    road_segment = [
        {'token': tokens(), 'polygon_token': add_polygon(p), 'is_intersection': False,
         'drivable_area_token': drivable[0]['token']}
        for p in L['road_segment']
    ]
    lane = [
        {'token': tokens(), 'polygon_token': add_polygon(p), 'lane_type': 'CAR', 'from_edge_line_token': None,
         'to_edge_line_token': None, 'left_lane_divider_segments': [], 'right_lane_divider_segments': []}
        for p in L['lane']
    ]
    simple = {
        layer: [{'token': tokens(), 'polygon_token': add_polygon(p)} for p in L[layer]]
        for layer in ('ped_crossing', 'walkway', 'carpark_area')
    }
    for rec in simple['ped_crossing']:
        rec['road_segment_token'] = None
    for rec in simple['carpark_area']:
        rec.update(orientation=0.0, road_block_token=None)
    stop_line = [
        {'token': tokens(), 'polygon_token': add_polygon(p), 'stop_line_type': 'PED_CROSSING',
         'ped_crossing_tokens': [], 'traffic_light_tokens': [], 'road_block_token': None}
        for p in L['stop_line']
    ]
    road_divider = [
        {'token': tokens(), 'line_token': add_line(ln), 'road_segment_token': None} for ln in L['road_divider']
    ]
    lane_divider = []
    for ln in L['lane_divider']:
        lt = add_line(ln)
        segs = [{'node_token': t, 'segment_type': 'DOUBLE_DASHED_WHITE'} for t in lines[-1]['node_tokens']]
        lane_divider.append({'token': tokens(), 'line_token': lt, 'lane_divider_segments': segs})
    return {
        'version': '1.3',
        'canvas_edge': [world.size, world.size],
        'node': nodes,
        'line': lines,
        'polygon': polygons,
        'drivable_area': drivable,
        'road_segment': road_segment,
        'road_block': [],
        'lane': lane,
        'ped_crossing': simple['ped_crossing'],
        'walkway': simple['walkway'],
        'stop_line': stop_line,
        'carpark_area': simple['carpark_area'],
        'road_divider': road_divider,
        'lane_divider': lane_divider,
        'traffic_light': [],
        'arcline_path_3': {},
        'connectivity': {},
        'lane_connector': [],
    }
