"""Write the demo world as a nuScenes ``v1.0-mini`` dataset.

Scenes carry the names of the real v1.0-mini scenes, so the devkit's ``mini_train`` and
``mini_val`` splits apply unchanged, and their logs are at the real map locations. Output:
``samples/`` and ``sweeps/`` (LiDAR ``.pcd.bin``, camera ``.jpg``), ``maps/`` (basemap PNGs
and ``expansion/*.json``) and the 13 ``v1.0-mini/*.json`` tables.
"""

import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from pyquaternion import Quaternion

from fuller.datasets.create_infos import pose_matrix
from fuller.datasets.metainfo import CAMERAS

from .objects import CLASSES, DEFAULT_COUNTS, sample_agents
from .sensors import lidar_sweep, render_camera
from .tokens import TokenFactory
from .world import DRIVABLE, LANE_WIDTH, add_parking_lot, build_world, map_expansion_json

# Real v1.0-mini scene names and their locations.
SCENES = [
    ('scene-0061', 'singapore-onenorth'), ('scene-0103', 'boston-seaport'), ('scene-0553', 'boston-seaport'),
    ('scene-0655', 'boston-seaport'), ('scene-0757', 'boston-seaport'), ('scene-0796', 'singapore-queenstown'),
    ('scene-0916', 'singapore-queenstown'), ('scene-1077', 'singapore-hollandvillage'),
    ('scene-1094', 'singapore-hollandvillage'), ('scene-1100', 'singapore-hollandvillage'),
]
LOCATIONS = ['singapore-onenorth', 'boston-seaport', 'singapore-queenstown', 'singapore-hollandvillage']

# Sensor rig modelled on the nuScenes car, per camera of fuller.datasets.metainfo.CAMERAS (in
# that order): (translation in ego frame, yaw in degrees, focal length at 1600x900). Cameras
# look along their yaw; the LiDAR is rotated -90 deg.
CAMERA_RIG = dict(zip(CAMERAS, [
    ((1.70, 0.02, 1.51), 0.0, 1266.0),
    ((1.55, -0.49, 1.50), -55.0, 1260.0),
    ((1.52, 0.49, 1.51), 55.0, 1257.0),
    ((0.03, 0.00, 1.57), 180.0, 809.0),
    ((1.04, 0.48, 1.56), 110.0, 1256.0),
    ((1.03, -0.48, 1.56), -110.0, 1259.0),
]))
LIDAR_TRANSLATION = (0.94, 0.0, 1.84)
LIDAR_YAW = -90.0
CATEGORY_NAMES = [
    'animal', 'human.pedestrian.adult', 'human.pedestrian.child', 'human.pedestrian.construction_worker',
    'human.pedestrian.personal_mobility', 'human.pedestrian.police_officer', 'human.pedestrian.stroller',
    'human.pedestrian.wheelchair', 'movable_object.barrier', 'movable_object.debris',
    'movable_object.pushable_pullable', 'movable_object.trafficcone', 'static_object.bicycle_rack',
    'vehicle.bicycle', 'vehicle.bus.bendy', 'vehicle.bus.rigid', 'vehicle.car', 'vehicle.construction',
    'vehicle.emergency.ambulance', 'vehicle.emergency.police', 'vehicle.motorcycle', 'vehicle.trailer',
    'vehicle.truck',
]
ATTRIBUTE_NAMES = [
    'vehicle.moving', 'vehicle.parked', 'vehicle.stopped', 'cycle.with_rider', 'cycle.without_rider',
    'pedestrian.moving', 'pedestrian.standing', 'pedestrian.sitting_lying_down',
]
VISIBILITY = [('1', 'v0-40'), ('2', 'v40-60'), ('3', 'v60-80'), ('4', 'v80-100')]
CAMERA_FULL_SIZE = (1600, 900)

# The demo world's version: the date of the last change to what the generator writes (its maps,
# objects, sensors, tables). Any such change must set a new one: tools/run_demo.sh then makes
# its data again, a dataset on data of another version warns, and tools/ablate.py trains its
# runs again instead of reusing ones of the old world. tests/test_datasets/test_demo_world_version.py
# pins the generator's output to it, so a change that forgets it fails there.
WORLD_VERSION = '2026-12-03'
# Written into the dataset root, last (a generation cut short leaves none).
MANIFEST = 'demo_world.json'


@dataclass
class DemoConfig:
    """Knobs of the demo dataset. Defaults: 240 keyframes (10 scenes x 24), 352 MB, a few minutes
    on 2 cores (data/README.md has the measured figures).

    Attributes:
        seed: everything (map, objects, noise, tokens) is a function of it.
        keyframes: keyframes per scene (nuScenes: ~40). Scale up for a bigger dataset.
        sweeps: non-keyframe LiDAR sweeps written before every keyframe (nuScenes: 9).
        image_scale: camera resolution relative to nuScenes' 1600x900.
        azimuth_steps: LiDAR firings per revolution per beam.
        object_counts: objects per class per scene.
        keyframe_interval: s between keyframes (nuScenes: 0.5).
        sweep_interval: s between LiDAR sweeps: a 10 Hz spinning LiDAR, so the 4 sweeps before a
            keyframe hold 0.4 s of motion, as nuScenes' 9 sweeps at 20 Hz (0.05 s) do.
        lot_scenes: scenes whose ego drives through a large car park at walking pace instead of
            along a road (v1.0-mini's scene-0655 and scene-0916 are "Parking lot" scenes); their
            locations get one such lot (:func:`fuller.demo.world.add_parking_lot`).
    """

    seed: int = 0
    keyframes: int = 24
    sweeps: int = 4
    image_scale: float = 0.2
    azimuth_steps: int = 600
    object_counts: dict = field(default_factory=lambda: dict(DEFAULT_COUNTS))
    keyframe_interval: float = 0.5
    sweep_interval: float = 0.1
    lot_scenes: tuple = ()


def _pose(translation, yaw_deg: float) -> tuple[list, list]:
    q = Quaternion(axis=[0, 0, 1], degrees=yaw_deg)
    return [float(v) for v in translation], [float(v) for v in q.elements]


# Camera frame (x right, y down, z forward) in a frame whose x looks forward.
_CAM_FROM_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_calibration(channel: str, scale: float) -> tuple[list, list, list]:
    """Translation, rotation (quaternion w, x, y, z) and intrinsics of a camera in ego frame."""
    (t, yaw, f) = CAMERA_RIG[channel]
    rot = Quaternion(axis=[0, 0, 1], degrees=yaw).rotation_matrix @ _CAM_FROM_FORWARD
    q = Quaternion(matrix=rot)
    w, h = CAMERA_FULL_SIZE
    k = [[f * scale, 0.0, w * scale / 2], [0.0, f * scale, h * scale / 2], [0.0, 0.0, 1.0]]
    return list(t), [float(v) for v in q.elements], k


def _ego_route(world, rng, n: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Ego positions [n, 2] and yaws [n] driving the right lane of a road at constant speed."""
    road = world.roads[rng.integers(len(world.roads))]
    direction = 1.0 if rng.random() < 0.5 else -1.0
    speed = float(rng.uniform(4.0, 8.0))
    s0 = float(rng.uniform(120, world.size - 120))
    off = (-direction if road.axis == 0 else direction) * 0.5 * LANE_WIDTH
    s = s0 + direction * speed * dt * np.arange(n)
    xy = np.stack([s, np.full(n, road.center + off)], 1) if road.axis == 0 else np.stack(
        [np.full(n, road.center + off), s], 1)
    yaw = (0.0 if road.axis == 0 else np.pi / 2) + (0.0 if direction > 0 else np.pi)
    return xy, np.full(n, yaw)


def _lot_route(lot, rng, n: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Ego positions [n, 2] and yaws [n] driving along the middle of a car park's long side at
    2-3 m/s (a parking lot's walking pace), starting 6 m inside one end."""
    x0, y0, x1, y1 = lot.bounds
    axis = 0 if x1 - x0 >= y1 - y0 else 1
    lo, hi = (x0, x1) if axis == 0 else (y0, y1)
    mid = (y0 + y1) / 2 if axis == 0 else (x0 + x1) / 2
    direction = 1.0 if rng.random() < 0.5 else -1.0
    speed = min(float(rng.uniform(2.0, 3.0)), max(hi - lo - 12.0, 0.0) / max(dt * (n - 1), 1e-6))
    s = (lo + 6.0 if direction > 0 else hi - 6.0) + direction * speed * dt * np.arange(n)
    xy = np.stack([s, np.full(n, mid)], 1) if axis == 0 else np.stack([np.full(n, mid), s], 1)
    yaw = (0.0 if axis == 0 else np.pi / 2) + (0.0 if direction > 0 else np.pi)
    return xy, np.full(n, yaw)


@dataclass
class _Scene:
    """What the writer carries through one scene: its log, the ego's route, its objects, their
    tokens, and the last record of each channel (to chain ``prev``/``next``)."""

    index: int
    name: str
    location: str
    world: object
    logfile: str
    t0: int
    ego_xy: np.ndarray
    ego_yaw: np.ndarray
    speed: float
    agents: list
    token: str
    sample_tokens: list
    inst_tokens: list
    ann_tokens: list
    last_sd: dict


class _DemoWriter:
    """Writes the demo dataset in the order its random streams are drawn: vocabulary, sensor rig,
    maps, then scene by scene (keyframe by keyframe: sweeps, keyframe LiDAR, cameras,
    annotations), and the tables last. Every token comes from one factory and every random draw
    from one generator, so the output is a function of ``cfg.seed``."""

    T_START = 1_533_000_000_000_000  # µs; scene i starts 100 s after scene i - 1

    def __init__(self, out_dir: str, cfg: DemoConfig) -> None:
        unknown = sorted(set(cfg.lot_scenes) - {name for name, _ in SCENES})
        if unknown:
            raise ValueError(f'DemoConfig.lot_scenes: {unknown} are not demo scenes (those are '
                             f'{", ".join(name for name, _ in SCENES)})')
        self.out_dir, self.cfg = out_dir, cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.tok = TokenFactory(cfg.seed + 1)
        self.version_dir = osp.join(out_dir, 'v1.0-mini')
        for d in [self.version_dir, osp.join(out_dir, 'maps', 'expansion'), osp.join(out_dir, 'samples', 'LIDAR_TOP'),
                  osp.join(out_dir, 'sweeps', 'LIDAR_TOP')] + [osp.join(out_dir, 'samples', c) for c in CAMERAS]:
            os.makedirs(d, exist_ok=True)
        self.T = {name: [] for name in ('category', 'attribute', 'visibility', 'instance', 'sensor',
                                        'calibrated_sensor', 'ego_pose', 'log', 'scene', 'sample', 'sample_data',
                                        'sample_annotation', 'map')}
        self.image_size = (int(round(CAMERA_FULL_SIZE[0] * cfg.image_scale)),
                           int(round(CAMERA_FULL_SIZE[1] * cfg.image_scale)))
        self.n_ann = 0

    # ------------------------------------------------------------------ static tables
    def write_vocabulary(self) -> None:
        """The ``category``, ``attribute`` and ``visibility`` tables."""
        self.cat_tok, self.attr_tok = {}, {}
        for name in CATEGORY_NAMES:
            self.cat_tok[name] = self.tok()
            self.T['category'].append({'token': self.cat_tok[name], 'name': name,
                                       'description': f'{name} (synthetic demo)', 'index': len(self.T['category'])})
        for name in ATTRIBUTE_NAMES:
            self.attr_tok[name] = self.tok()
            self.T['attribute'].append({'token': self.attr_tok[name], 'name': name, 'description': name})
        for t, level in VISIBILITY:
            self.T['visibility'].append({'token': t, 'level': level, 'description': f'visibility {level}%'})

    def write_rig(self) -> None:
        """The ``sensor`` and ``calibrated_sensor`` tables: one LiDAR and the six cameras."""
        self.sensor_tok, self.calib_tok = {}, {}
        for channel in ['LIDAR_TOP', *CAMERAS]:
            self.sensor_tok[channel] = self.tok()
            self.T['sensor'].append({'token': self.sensor_tok[channel], 'channel': channel,
                                     'modality': 'lidar' if channel == 'LIDAR_TOP' else 'camera'})
            if channel == 'LIDAR_TOP':
                trans, rot = _pose(LIDAR_TRANSLATION, LIDAR_YAW)
                intr = []
            else:
                trans, rot, intr = camera_calibration(channel, self.cfg.image_scale)
            self.calib_tok[channel] = self.tok()
            self.T['calibrated_sensor'].append({'token': self.calib_tok[channel],
                                                'sensor_token': self.sensor_tok[channel], 'translation': trans,
                                                'rotation': rot, 'camera_intrinsic': intr})
        by_sensor = {c['sensor_token']: c for c in self.T['calibrated_sensor']}
        self.calib = {channel: by_sensor[self.sensor_tok[channel]] for channel in self.sensor_tok}
        lidar = self.calib['LIDAR_TOP']
        self.lidar2ego = pose_matrix(lidar['translation'], lidar['rotation'])

    def write_maps(self) -> None:
        """A world per location: its map-expansion JSON, its basemap PNG and its ``map`` row."""
        self.worlds, self.map_tok, self.lots = {}, {}, {}
        lot_locations = {loc for name, loc in SCENES if name in self.cfg.lot_scenes}
        for loc in LOCATIONS:
            self.worlds[loc] = build_world(loc, self.rng)
            if loc in lot_locations:
                self.lots[loc] = add_parking_lot(self.worlds[loc], self.rng)
            with open(osp.join(self.out_dir, 'maps', 'expansion', f'{loc}.json'), 'w') as f:
                json.dump(map_expansion_json(self.worlds[loc], self.tok), f)
            self.map_tok[loc] = self.tok()
            basemap = np.where(self.worlds[loc].raster[::-1][::5, ::5] >= DRIVABLE, 255, 0).astype(np.uint8)
            cv2.imwrite(osp.join(self.out_dir, 'maps', f'{self.map_tok[loc]}.png'), basemap)
            self.T['map'].append({'token': self.map_tok[loc], 'log_tokens': [], 'category': 'semantic_prior',
                                  'filename': f'maps/{self.map_tok[loc]}.png'})

    # ------------------------------------------------------------------ scenes
    def write_scene(self, index: int, name: str, loc: str) -> _Scene:
        """A scene: its log, keyframes (with sweeps, images and annotations) and instances."""
        cfg, tok = self.cfg, self.tok
        log_token = tok()
        logfile = f'demo-{index:02d}-{loc}'
        self.T['log'].append({'token': log_token, 'logfile': logfile, 'vehicle': 'demo',
                              'date_captured': '2018-08-01', 'location': loc})
        next(m for m in self.T['map'] if m['token'] == self.map_tok[loc])['log_tokens'].append(log_token)
        world = self.worlds[loc]
        in_lot = name in cfg.lot_scenes
        route = _lot_route if in_lot else _ego_route
        ego_xy, ego_yaw = route(self.lots[loc] if in_lot else world, self.rng, cfg.keyframes, cfg.keyframe_interval)
        speed = np.linalg.norm(ego_xy[-1] - ego_xy[0]) / max(cfg.keyframe_interval * (cfg.keyframes - 1), 1e-6)
        agents = sample_agents(world, self.rng, ego_xy, cfg.object_counts)
        scene = _Scene(index=index, name=name, location=loc, world=world, logfile=logfile,
                       t0=self.T_START + index * 100_000_000, ego_xy=ego_xy, ego_yaw=ego_yaw, speed=speed,
                       agents=agents, token=tok(), sample_tokens=[tok() for _ in range(cfg.keyframes)],
                       inst_tokens=[tok() for _ in agents],
                       ann_tokens=[[tok() for _ in range(cfg.keyframes)] for _ in agents],
                       last_sd={c: None for c in ['LIDAR_TOP', *CAMERAS]})
        for k in range(cfg.keyframes):
            self.write_keyframe(scene, k)
        for a_i, agent in enumerate(agents):
            self.T['instance'].append({'token': scene.inst_tokens[a_i],
                                       'category_token': self.cat_tok[CLASSES[agent.name][0]],
                                       'nbr_annotations': cfg.keyframes,
                                       'first_annotation_token': scene.ann_tokens[a_i][0],
                                       'last_annotation_token': scene.ann_tokens[a_i][-1]})
        self.T['scene'].append({'token': scene.token, 'log_token': log_token, 'nbr_samples': cfg.keyframes,
                                'first_sample_token': scene.sample_tokens[0],
                                'last_sample_token': scene.sample_tokens[-1], 'name': name,
                                'description': f'Synthetic demo scene at {loc}' + (', parking lot' if in_lot else '')})
        return scene

    def _ego_at(self, scene: _Scene, t: float) -> np.ndarray:
        """The ego pose [4, 4] ``t`` s after the scene's first keyframe (constant speed and yaw)."""
        unit = np.array([np.cos(scene.ego_yaw[0]), np.sin(scene.ego_yaw[0])])
        xy = scene.ego_xy[0] + unit * scene.speed * t
        return pose_matrix([xy[0], xy[1], 0.0], Quaternion(axis=[0, 0, 1], radians=scene.ego_yaw[0]).elements)

    def _add_sample_data(self, scene: _Scene, channel: str, t_rel: float, sample_token: str, key: bool,
                         filename: str, w: int = 0, h: int = 0) -> np.ndarray:
        """An ``ego_pose`` and a ``sample_data`` row chained to the channel's previous one; returns
        the ego pose."""
        ts = scene.t0 + int(round(t_rel * 1e6))
        ego = self._ego_at(scene, t_rel)
        ep_token = self.tok()
        self.T['ego_pose'].append({'token': ep_token, 'timestamp': ts,
                                   'rotation': [float(v) for v in Quaternion(matrix=ego[:3, :3]).elements],
                                   'translation': [float(v) for v in ego[:3, 3]]})
        rec = {'token': self.tok(), 'sample_token': sample_token, 'ego_pose_token': ep_token,
               'calibrated_sensor_token': self.calib_tok[channel], 'timestamp': ts,
               'fileformat': 'pcd' if channel == 'LIDAR_TOP' else 'jpg', 'is_key_frame': key,
               'height': h, 'width': w, 'filename': filename, 'prev': '', 'next': ''}
        last = scene.last_sd[channel]
        if last is not None:
            rec['prev'] = last['token']
            last['next'] = rec['token']
        scene.last_sd[channel] = rec
        self.T['sample_data'].append(rec)
        return ego

    def write_keyframe(self, scene: _Scene, k: int) -> None:
        """Keyframe ``k``: its ``sample`` row, the sweeps before it, its LiDAR sweep, six images and
        one annotation per object (with LiDAR point counts and camera visibility)."""
        cfg, agents = self.cfg, scene.agents
        t_key = k * cfg.keyframe_interval
        ts_key = scene.t0 + int(round(t_key * 1e6))
        sample_token = scene.sample_tokens[k]
        self.T['sample'].append({'token': sample_token, 'timestamp': ts_key,
                                 'prev': scene.sample_tokens[k - 1] if k else '',
                                 'next': scene.sample_tokens[k + 1] if k + 1 < cfg.keyframes else '',
                                 'scene_token': scene.token})
        for j in range(cfg.sweeps, 0, -1):
            t_sw = t_key - j * cfg.sweep_interval
            name = f'{scene.logfile}__LIDAR_TOP__{scene.t0 + int(round(t_sw * 1e6))}.pcd.bin'
            ego = self._add_sample_data(scene, 'LIDAR_TOP', t_sw, sample_token, False, f'sweeps/LIDAR_TOP/{name}')
            pts, _ = lidar_sweep(scene.world, agents, t_sw, ego @ self.lidar2ego, cfg.azimuth_steps, self.rng)
            pts.tofile(osp.join(self.out_dir, 'sweeps', 'LIDAR_TOP', name))
        name = f'{scene.logfile}__LIDAR_TOP__{ts_key}.pcd.bin'
        ego = self._add_sample_data(scene, 'LIDAR_TOP', t_key, sample_token, True, f'samples/LIDAR_TOP/{name}')
        pts, hit_idx = lidar_sweep(scene.world, agents, t_key, ego @ self.lidar2ego, cfg.azimuth_steps, self.rng)
        pts.tofile(osp.join(self.out_dir, 'samples', 'LIDAR_TOP', name))
        num_pts = np.bincount(hit_idx[hit_idx >= 0], minlength=len(agents))[: len(agents)]
        visible, total = np.zeros(len(agents)), np.zeros(len(agents))
        w_img, h_img = self.image_size
        for channel in CAMERAS:
            c = self.calib[channel]
            name = f'{scene.logfile}__{channel}__{ts_key}.jpg'
            ego = self._add_sample_data(scene, channel, t_key, sample_token, True, f'samples/{channel}/{name}',
                                        w_img, h_img)
            img, vis, tot = render_camera(scene.world, agents, t_key, ego @ pose_matrix(c['translation'], c['rotation']),
                                          np.array(c['camera_intrinsic']), w_img, h_img, self.rng)
            visible += vis
            total += tot
            cv2.imwrite(osp.join(self.out_dir, 'samples', channel, name), img[:, :, ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
        frac = np.divide(visible, total, out=np.zeros_like(visible), where=total > 0)
        vis_level = np.clip(np.searchsorted([0.4, 0.6, 0.8], frac, side='right') + 1, 1, 4)
        self._annotate(scene, k, t_key, num_pts, vis_level)

    def _annotate(self, scene: _Scene, k: int, t_key: float, num_pts: np.ndarray, vis_level: np.ndarray) -> None:
        """One ``sample_annotation`` per object at keyframe ``k``, chained along its instance."""
        for a_i, agent in enumerate(scene.agents):
            center = agent.center_at(t_key)
            anns = scene.ann_tokens[a_i]
            self.T['sample_annotation'].append({
                'token': anns[k], 'sample_token': scene.sample_tokens[k], 'instance_token': scene.inst_tokens[a_i],
                'visibility_token': str(int(vis_level[a_i])),
                'attribute_tokens': [self.attr_tok[agent.attribute]] if agent.attribute else [],
                'translation': [float(v) for v in center],
                'size': [float(v) for v in agent.size],
                'rotation': [float(v) for v in Quaternion(axis=[0, 0, 1], radians=agent.yaw).elements],
                'prev': anns[k - 1] if k else '',
                'next': anns[k + 1] if k + 1 < self.cfg.keyframes else '',
                'num_lidar_pts': int(num_pts[a_i]), 'num_radar_pts': 0,
            })
            self.n_ann += 1

    def finish(self) -> dict:
        """Write the 13 tables; return the summary counts."""
        for name, rows in self.T.items():
            with open(osp.join(self.version_dir, f'{name}.json'), 'w') as f:
                json.dump(rows, f, indent=0)
        stats = {'scenes': len(SCENES), 'samples': len(self.T['sample']), 'annotations': self.n_ann}
        with open(osp.join(self.out_dir, MANIFEST), 'w') as f:
            json.dump({'world_version': WORLD_VERSION, 'config': asdict(self.cfg), **stats}, f, indent=1)
        size = sum(osp.getsize(osp.join(r, f)) for r, _, fs in os.walk(self.out_dir) for f in fs)
        return {**stats, 'bytes': size}


def generate_demo_dataset(out_dir: str, cfg: DemoConfig | None = None, verbose: bool = True) -> dict:
    """Generate the demo dataset under ``out_dir``.

    Args:
        out_dir: dataset root (it receives ``samples/``, ``sweeps/``, ``maps/``, ``v1.0-mini/``).
        cfg: size and seed knobs.
        verbose: print one line per scene.

    Returns:
        Summary counts (scenes, samples, annotations, bytes written).
    """
    writer = _DemoWriter(out_dir, cfg or DemoConfig())
    writer.write_vocabulary()
    writer.write_rig()
    writer.write_maps()
    for index, (name, loc) in enumerate(SCENES):
        scene = writer.write_scene(index, name, loc)
        if verbose:
            print(f'[create_demo_data] {name} ({loc}): {writer.cfg.keyframes} keyframes, {len(scene.agents)} objects')
    return writer.finish()


def demo_world_version(data_root: str) -> str | None:
    """The world version of the demo data under ``data_root`` (its :data:`MANIFEST`), or None
    when it has none (other data, or demo data made before versions were recorded)."""
    path = osp.join(data_root, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get('world_version')


def demo_data_problem(data_root: str) -> str | None:
    """Why the demo data under ``data_root`` is not what this code generates, or None when it is.

    Used by ``tools/run_demo.sh`` (which then makes the data again) on the demo's own folder."""
    version = demo_world_version(data_root)
    if version == WORLD_VERSION:
        return None
    if version is not None:
        return f'{data_root} holds the demo world of {version}; this code makes the world of {WORLD_VERSION}'
    if osp.isfile(osp.join(data_root, 'v1.0-mini', 'scene.json')):
        return (f'{data_root} holds demo data without {MANIFEST} (made before the world version was recorded); '
                f'this code makes the world of {WORLD_VERSION}')
    return f'{data_root} holds no demo data'
