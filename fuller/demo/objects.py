"""Traffic participants of a demo scene: the 10 nuScenes detection classes.

Each object is a box with a nuScenes category, a size (w, l, h as nuScenes stores it), a
pose at the scene's first keyframe and a constant velocity, placed where it belongs on the
map: vehicles in lanes or car parks, pedestrians on walkways and crossings, cones and
barriers along road edges.
"""

from dataclasses import dataclass

import numpy as np
from shapely.geometry import LineString, Point, Polygon

from fuller.datasets.metainfo import CLASSES as DETECTION_CLASSES
from fuller.datasets.metainfo import STILL_ATTRIBUTES, VEHICLES

from .world import LANE_WIDTH, WALKWAY_WIDTH, World

# Per detection class, in the order of fuller.datasets.metainfo.CLASSES: nuScenes category,
# mean size (w, l, h) in m, colour RGB, objects per scene, and the nose (below). Vehicles dominate, as in
# nuScenes, but every class has enough instances across the 8 training scenes for a detector
# to learn it on a CPU budget.
_CLASS_TABLE = [
    ('vehicle.car', (1.95, 4.6, 1.7), (200, 40, 40), 16, (0.28, 0.55)),
    ('vehicle.truck', (2.5, 7.0, 3.0), (230, 140, 20), 5, (0.22, 0.7)),
    ('vehicle.trailer', (2.6, 10.0, 3.8), (140, 80, 30), 4, (0.12, 0.35)),
    ('vehicle.bus.rigid', (2.9, 11.0, 3.5), (240, 210, 30), 4, (0.08, 0.75)),
    ('vehicle.construction', (2.8, 6.2, 3.2), (250, 100, 170), 4, (0.3, 0.5)),
    ('vehicle.bicycle', (0.6, 1.7, 1.3), (40, 200, 200), 5, (0.3, 0.6)),
    ('vehicle.motorcycle', (0.8, 2.1, 1.5), (40, 90, 220), 5, (0.3, 0.6)),
    ('human.pedestrian.adult', (0.7, 0.7, 1.75), (30, 160, 60), 14, None),
    ('movable_object.trafficcone', (0.4, 0.4, 1.0), (255, 120, 0), 10, None),
    ('movable_object.barrier', (2.5, 0.5, 1.0), (160, 160, 200), 8, None),
]
# LiDAR reflectivity of an object's surface (nuScenes' 0-255 intensity scale at normal
# incidence), drawn per object from its material's range: it is not a class label. Vehicle
# paints span a wide range shared by every vehicle class; people, bicycles and motorcycles
# return weakly; cones and barriers carry retro-reflective bands (bright at any incidence,
# and the two share one range). Geometry (size, shape, height) is what tells classes apart.
MATERIALS = {
    'paint': ((6.0, 40.0), False),  # (reflectivity range, retro-reflective)
    'cycle': ((4.0, 20.0), False),
    'person': ((3.0, 12.0), False),
    'retroreflector': ((60.0, 120.0), True),
}
MATERIAL = dict(car='paint', truck='paint', trailer='paint', bus='paint', construction_vehicle='paint',
                bicycle='cycle', motorcycle='cycle', pedestrian='person', traffic_cone='retroreflector',
                barrier='retroreflector')
# detection class -> (nuScenes category, mean size (w, l, h) in m, colour RGB)
CLASSES: dict[str, tuple[str, tuple[float, float, float], tuple[int, int, int]]] = {
    c: row[:3] for c, row in zip(DETECTION_CLASSES, _CLASS_TABLE)}
# Objects per scene, by class.
DEFAULT_COUNTS = {c: row[3] for c, row in zip(DETECTION_CLASSES, _CLASS_TABLE)}


@dataclass
class Agent:
    """One annotated object with constant-velocity motion.

    Attributes:
        name: detection class name.
        center: box centre at t=0 in global coordinates (x, y, z), m.
        size: (w, l, h), m.
        yaw: heading around +z, rad (box length along the heading).
        velocity: (vx, vy) in global coordinates, m/s.
        attribute: nuScenes attribute name ('' when the class has none).
        reflectivity: LiDAR reflectivity of its surface (see MATERIALS).
    """

    name: str
    center: np.ndarray
    size: np.ndarray
    yaw: float
    velocity: np.ndarray
    attribute: str
    reflectivity: float = 20.0

    @property
    def retroreflective(self) -> bool:
        return MATERIALS[MATERIAL[self.name]][1]

    def center_at(self, t: float) -> np.ndarray:
        c = self.center.copy()
        c[:2] += self.velocity * t
        return c


# Vehicles are not plain boxes: the front of the box is a lower nose (bonnet, cab front,
# fairing), so LiDAR and cameras can tell the front from the back. Fraction of the length and
# of the height the nose takes; classes without one are solid boxes.
NOSE = {c: row[4] for c, row in zip(DETECTION_CLASSES, _CLASS_TABLE) if row[4] is not None}


def agent_parts(agent: 'Agent') -> list[tuple[np.ndarray, np.ndarray]]:
    """Solid parts of an object in its box frame (x along the heading, z up, origin at the box
    centre): ``[(centre offset [3], half extents [3]), ...]``, all inside the annotated box."""
    w, l, h = agent.size
    if agent.name not in NOSE:
        return [(np.zeros(3), np.array([l, w, h]) / 2)]
    fl, fh = NOSE[agent.name]
    body_l, nose_l, nose_h = l * (1 - fl), l * fl, h * fh
    body = (np.array([-l / 2 + body_l / 2, 0.0, 0.0]), np.array([body_l, w, h]) / 2)
    nose = (np.array([l / 2 - nose_l / 2, 0.0, -h / 2 + nose_h / 2]), np.array([nose_l, w, nose_h]) / 2)
    return [body, nose]


def _along(world: World, rng, focus: np.ndarray, radius: float):
    """A road near ``focus`` and a coordinate along it within ``radius``."""
    near = [r for r in world.roads if abs(focus[1 - r.axis] - r.center) < radius]
    road = near[rng.integers(len(near))] if near else world.roads[rng.integers(len(world.roads))]
    s = float(np.clip(focus[road.axis] + rng.uniform(-radius, radius), 5, world.size - 5))
    return road, s


def _point(road, s: float, offset: float) -> np.ndarray:
    return np.array([s, road.center + offset]) if road.axis == 0 else np.array([road.center + offset, s])


def sample_agent(name: str, world: World, rng: np.random.Generator, focus: np.ndarray, radius: float) -> Agent:
    """Sample one agent of class ``name`` near ``focus`` where that class belongs, standing on
    the ground there (on a walkway's kerb height), with its material's reflectivity."""
    agent = _sample_pose(name, world, rng, focus, radius)
    agent.center[2] += float(world.height_at(world.label_at(agent.center[None, :2]))[0])
    lo, hi = MATERIALS[MATERIAL[name]][0]
    agent.reflectivity = float(rng.uniform(lo, hi))
    return agent


def _sample_pose(name: str, world: World, rng: np.random.Generator, focus: np.ndarray, radius: float) -> Agent:
    _, mean_size, _ = CLASSES[name]
    size = np.array(mean_size) * rng.uniform(0.9, 1.1, 3)
    road, s = _along(world, rng, focus, radius)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    heading = (0.0 if road.axis == 0 else np.pi / 2) + (0.0 if direction > 0 else np.pi)
    # Right-hand traffic: a lane at positive offset k*LANE_WIDTH carries -direction traffic.
    lane = int(rng.integers(road.lanes))
    lane_offset = -direction * (lane + 0.5) * LANE_WIDTH if road.axis == 0 else direction * (lane + 0.5) * LANE_WIDTH
    unit = np.array([np.cos(heading), np.sin(heading)])
    speed, attribute = 0.0, ''
    if name in VEHICLES:
        lots = [cp for cp in world.layers['carpark_area']
                if np.abs(np.asarray(cp.centroid.coords[0]) - focus).max() < radius]
        if name == 'car' and lots and rng.random() < 0.35:
            cp = lots[rng.integers(len(lots))]
            x0, y0, x1, y1 = cp.bounds
            # 3 m from the lot's edges; a lot narrower than 6 m (one cut by a road or by the
            # world's edge) gets its middle line (the same draws either way).
            mx, my = min(3.0, (x1 - x0) / 2), min(3.0, (y1 - y0) / 2)
            xy = np.array([rng.uniform(x0 + mx, x1 - mx), rng.uniform(y0 + my, y1 - my)])
            heading = np.pi / 2 + (0 if rng.random() < 0.5 else np.pi)
            return Agent(name, np.r_[xy, size[2] / 2], size, float(heading), np.zeros(2), 'vehicle.parked')
        moving = rng.random() < (0.75 if name != 'construction_vehicle' else 0.2)
        speed = float(rng.uniform(3, 10)) if moving else 0.0
        # A still bus waits at a stop in its lane; other still vehicles are parked at the kerb
        # (the outer lane's outer edge): the nuScenes convention the devkit's baselines assume.
        attribute = 'vehicle.moving' if moving else STILL_ATTRIBUTES[name]
        if not moving and name != 'bus':
            kerb = road.lanes * LANE_WIDTH - size[0] / 2 - 0.3
            lane_offset = -direction * kerb if road.axis == 0 else direction * kerb
        xy = _point(road, s, lane_offset)
    elif name in ('bicycle', 'motorcycle'):
        moving = rng.random() < 0.7
        speed = float(rng.uniform(2, 5) if name == 'bicycle' else rng.uniform(4, 9)) if moving else 0.0
        attribute = 'cycle.with_rider' if moving else 'cycle.without_rider'
        edge = road.half_width - 0.8
        xy = _point(road, s, (-edge if road.axis == 0 else edge) * direction)
    elif name == 'pedestrian':
        moving = rng.random() < 0.7
        speed = float(rng.uniform(0.8, 1.6)) if moving else 0.0
        attribute = 'pedestrian.moving' if moving else 'pedestrian.standing'
        if world.layers['ped_crossing'] and rng.random() < 0.3:
            pc = world.layers['ped_crossing'][rng.integers(len(world.layers['ped_crossing']))]
            x0, y0, x1, y1 = pc.bounds
            xy = np.array([rng.uniform(x0 + 0.5, x1 - 0.5), rng.uniform(y0 + 0.5, y1 - 0.5)])
            across = 0.0 if (x1 - x0) > (y1 - y0) else np.pi / 2
            heading = across + np.pi / 2 + (0 if rng.random() < 0.5 else np.pi)
            unit = np.array([np.cos(heading), np.sin(heading)])
        else:
            side = 1.0 if rng.random() < 0.5 else -1.0
            xy = _point(road, s, side * (road.half_width + WALKWAY_WIDTH * rng.uniform(0.2, 0.8)))
    else:  # traffic_cone, barrier: static, along the road edge
        side = 1.0 if rng.random() < 0.5 else -1.0
        xy = _point(road, s, side * (road.half_width - 0.5))
        heading = (0.0 if road.axis == 0 else np.pi / 2) + (np.pi / 2 if name == 'barrier' else 0.0)
        heading += float(rng.uniform(-0.1, 0.1))
    return Agent(name, np.r_[xy, size[2] / 2], size, float(heading), unit * speed, attribute)


def sample_agents(world: World, rng: np.random.Generator, ego_xy: np.ndarray, counts: dict[str, int],
                  radius: float = 45.0) -> list[Agent]:
    """Sample a scene's agents around the ego route, avoiding overlaps at t=0.

    Args:
        world: the location's map.
        rng: random generator.
        ego_xy: [K, 2] ego positions at the scene's keyframes.
        counts: objects per class.
        radius: half-size of the square around the route's middle in which objects live.
    """
    focus = ego_xy[len(ego_xy) // 2]
    # Nothing within 2 m of the ego route (the ego is 1.9 m wide): the neighbouring lanes stay clear
    # next to the ego, so the sensors keep a view past them.
    route = (LineString(ego_xy) if len(ego_xy) > 1 else Point(ego_xy[0])).buffer(3.0)
    agents: list[Agent] = []
    footprints = []
    # Round robin over the classes, the largest first in each round: long vehicles find room
    # before the small ones fill the lanes, and a crowded road (one narrow road near the route)
    # still gets every class rather than all of the first ones.
    order = sorted(counts, key=lambda c: -np.prod(CLASSES[c][1][:2]))
    rounds = [name for k in range(max(counts.values(), default=0)) for name in order if k < counts[name]]
    for name in rounds:
        for _try in range(50):
            a = sample_agent(name, world, rng, focus, radius)
            fp = footprint(a).buffer(0.3)
            if fp.intersects(route) or any(fp.intersects(f) for f in footprints):
                continue
            agents.append(a)
            footprints.append(fp)
            break
    return agents


def footprint(agent: Agent) -> Polygon:
    """The agent's box outline on the ground at t=0."""
    w, length = agent.size[0], agent.size[1]
    c, s = np.cos(agent.yaw), np.sin(agent.yaw)
    corners = np.array([[length / 2, w / 2], [length / 2, -w / 2], [-length / 2, -w / 2], [-length / 2, w / 2]])
    rot = np.array([[c, -s], [s, c]])
    return Polygon(corners @ rot.T + agent.center[:2])
