"""Ray casting for the simulated LiDAR and cameras.

The scene is the ground (z = 0, walkways raised by a kerb; coloured and painted by map layer)
plus the agents' boxes. Both sensors cast rays from their origin and keep the nearest hit.

The two sensors see different things, as on a real car. The cameras see colour and texture:
every map layer has its own colour and a texture fixed in the world (whose apparent scale
shrinks with distance), and objects their class's colour; they measure no depth. The LiDAR measures
geometry (shape, size, the kerb, occlusion; its density falls with range) and a return
strength that depends on the surface's material and the angle of incidence, not on the class:
asphalt, concrete and grass return alike (patchy, a few metres across), road paint is bright,
vehicles share one wide range of paints, people and bicycles are weak, and cones and barriers
are retro-reflective; weak echoes (dark surfaces, far away, at grazing incidence) are missed.
"""

import numpy as np

from .objects import CLASSES, Agent, agent_parts
from .world import CARPARK, DIVIDER, DRIVABLE, GROUND, KERB_HEIGHT, PED_CROSSING, STOP_LINE, WALKWAY, World

# Ground colour per label code (RGB): cameras see every map layer clearly.
GROUND_RGB = {
    GROUND: (96, 128, 70), DRIVABLE: (85, 85, 90), WALKWAY: (190, 175, 150), CARPARK: (60, 75, 120),
    PED_CROSSING: (235, 235, 235), STOP_LINE: (250, 250, 250), DIVIDER: (235, 200, 40),
}
# LiDAR reflectivity of the ground per label code (nuScenes' 0-255 intensity scale at normal
# incidence), before the world's patch variation (World.patch_factor, about x/÷ 1.4): grass
# verges, asphalt (roads and car parks alike) and concrete walkways overlap; paint is bright.
GROUND_REFLECTIVITY = {
    GROUND: 8.0, DRIVABLE: 6.5, WALKWAY: 8.0, CARPARK: 6.5, PED_CROSSING: 30.0, STOP_LINE: 30.0, DIVIDER: 30.0,
}
# A diffuse surface returns reflectivity x (DIFFUSE_FLOOR + (1 - DIFFUSE_FLOOR) |cos incidence|):
# the ground, seen at grazing angles, dims with range. Retro-reflectors return at any angle.
DIFFUSE_FLOOR = 0.2
# Echo detection: a return's strength falls with range squared; with s = intensity x
# (DETECTION_REF_RANGE / range)^2 it is detected with probability 1 - exp(-(s / DETECTION_SNR)^2).
# Asphalt is then seen to about 25 m (89% at 20 m, 30% at 30 m), paint and grass further, a dark
# car's side to about 50 m and a cone's reflector beyond 70 m.
DETECTION_REF_RANGE = 10.0
DETECTION_SNR = 0.3
# Measurement noise of the intensity: relative (speckle) and absolute.
INTENSITY_NOISE_REL = 0.15
INTENSITY_NOISE_ABS = 1.0
# Objects show their heading: vehicles have a lower nose (bonnet, cab, fairing; see
# objects.agent_parts) that LiDAR and cameras see, and cameras see a light band on the front
# face. Without both a box looks the same from the front and the back, and a detector cannot
# learn headings.
FRONT_RGB_MIX = 0.55
# Ground texture (cameras only; see ground_texture).
TEXTURE_CELL = 0.4
TEXTURE_CONTRAST = 0.12
SLAB_SIZE = 0.75
SLAB_JOINT = 0.06
SKY_RGB = np.array([170, 200, 235], np.float64)
SUN = np.array([0.4, 0.3, 0.866])

# Per-pixel labels of a rendered image (render_camera(return_labels=True)): the sky, then the
# ground's 7 label codes (fuller.demo.world: GROUND ... DIVIDER), then the 10 detection classes.
PIXEL_SKY = 0
PIXEL_GROUND = 1
PIXEL_OBJECT = PIXEL_GROUND + len(GROUND_RGB)

# HDL-32E-like beam elevations (degrees).
LIDAR_ELEVATIONS = np.linspace(-30.67, 10.67, 32)


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def cast_boxes(origin: np.ndarray, dirs: np.ndarray, agents: list[Agent], t: float, max_range: float,
               forward: np.ndarray | None = None):
    """Nearest object hit of each ray.

    Args:
        origin: [3] ray origin (global frame).
        dirs: [N, 3] unit ray directions (global frame).
        agents: objects to intersect, posed at time ``t``; each is the union of the solid
            parts :func:`~fuller.demo.objects.agent_parts` gives, inside its box.
        t: time since the scene start, s.
        max_range: rays are cut here, m.
        forward: optional viewing direction [3]; boxes wholly behind it are skipped.

    Returns:
        ``(dist, idx, normal, coverage)``: [N] hit distances (inf where none), [N] agent
        index (-1 where none), [N, 3] outward unit normals of the hit faces in the global
        frame, and [len(agents)] number of rays that hit each box, occluded or not.
    """
    n = len(dirs)
    dist = np.full(n, np.inf)
    idx = np.full(n, -1, np.int64)
    normal = np.zeros((n, 3))
    coverage = np.zeros(len(agents), np.int64)
    for k, a in enumerate(agents):
        center = a.center_at(t)
        radius = 0.5 * float(np.linalg.norm(a.size))
        if np.linalg.norm(center[:2] - origin[:2]) > max_range + radius:
            continue
        if forward is not None and float((center - origin) @ forward) < -radius:
            continue
        # Only rays inside the cone around the object's bounding sphere can hit it: the slab
        # tests run on those (same hits, a fraction of the rays).
        to_c = center - origin
        d_c = float(np.linalg.norm(to_c))
        if d_c > radius:
            cand = np.flatnonzero(dirs @ (to_c / d_c) >= np.sqrt(1.0 - (radius / d_c) ** 2) - 1e-9)
            if not len(cand):
                continue
        else:
            cand = np.arange(n)
        rot = yaw_matrix(a.yaw)
        d = dirs[cand] @ rot  # row-wise rot.T @ dir
        hit_any = np.zeros(len(cand), bool)
        for offset, half in agent_parts(a):
            o = rot.T @ (origin - center) - offset
            with np.errstate(divide='ignore', invalid='ignore'):
                inv = 1.0 / d
                t1 = (-half - o) * inv
                t2 = (half - o) * inv
            tmin = np.minimum(t1, t2)
            tmax = np.maximum(t1, t2)
            t_near = np.nanmax(tmin, axis=1)
            t_far = np.nanmin(tmax, axis=1)
            any_hit = (t_near <= t_far) & (t_far > 0) & (t_near > 0)
            hit_any |= any_hit
            hit = any_hit & (t_near < dist[cand])
            if not hit.any():
                continue
            axis = np.nanargmax(tmin[hit], axis=1)
            sign = -np.sign(d[hit, axis])
            local_n = np.zeros((hit.sum(), 3))
            local_n[np.arange(hit.sum()), axis] = sign
            rows = cand[hit]
            dist[rows] = t_near[hit]
            idx[rows] = k
            normal[rows] = local_n @ rot.T
        coverage[k] = int(hit_any.sum())
    return dist, idx, normal, coverage


def cast_plane(origin: np.ndarray, dirs: np.ndarray, z: float = 0.0) -> np.ndarray:
    """Distance along each ray down to the plane at height ``z`` (inf if it never gets there)."""
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (z - origin[2]) / dirs[:, 2]
    return np.where((dirs[:, 2] < -1e-6) & (t > 0), t, np.inf)


def cast_ground(world: World, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ground hit of each ray: ``(dist, codes)``, [N] distances (inf where none) and
    [N] label codes there. Walkways are the top of a kerb KERB_HEIGHT high; a ray that reaches
    z = 0 inside a walkway without meeting its top hits the kerb's face (placed at its foot).
    """
    d0 = cast_plane(origin, dirs, 0.0)
    dk = cast_plane(origin, dirs, KERB_HEIGHT)
    codes = np.full(len(dirs), GROUND, np.uint8)
    fin0, fink = np.isfinite(d0), np.isfinite(dk)
    codes[fin0] = world.label_at(origin[:2] + dirs[fin0, :2] * d0[fin0, None])
    top = np.zeros(len(dirs), bool)
    top[fink] = world.label_at(origin[:2] + dirs[fink, :2] * dk[fink, None]) == WALKWAY
    dist = np.where(top, dk, d0)
    codes[top] = WALKWAY
    return dist, codes


def lidar_sweep(world: World, agents: list[Agent], t: float, sensor2global: np.ndarray,
                azimuth_steps: int, rng: np.random.Generator, max_range: float = 70.0,
                dropout: float = 0.05, range_noise: float = 0.02):
    """Simulate one sweep of a 32-beam spinning LiDAR.

    Args:
        world: map (surface heights, reflectivity by material).
        agents: boxes.
        t: time since the scene start, s.
        sensor2global: [4, 4] LiDAR pose.
        azimuth_steps: firings per revolution.
        rng: noise generator.
        max_range: maximum range, m.
        dropout: fraction of returns randomly lost.
        range_noise: std of Gaussian range noise, m.

    Returns:
        ``(points, agent_idx)``: [N, 5] float32 (x, y, z, intensity, ring) in the sensor
        frame, as nuScenes ``.pcd.bin`` stores them, and [N] index of the agent each point
        hit (-1 for ground).
    """
    el = np.deg2rad(LIDAR_ELEVATIONS)
    az = np.linspace(-np.pi, np.pi, azimuth_steps, endpoint=False)
    ee, aa = np.meshgrid(el, az, indexing='ij')
    ring = np.repeat(np.arange(len(el)), azimuth_steps)
    local = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], -1).reshape(-1, 3)
    rot, origin = sensor2global[:3, :3], sensor2global[:3, 3]
    dirs = local @ rot.T
    d_box, idx, normal, _ = cast_boxes(origin, dirs, agents, t, max_range)
    d_gnd, codes = cast_ground(world, origin, dirs)
    dist = np.minimum(d_box, d_gnd)
    idx = np.where(d_box <= d_gnd, idx, -1)
    keep = (dist < max_range) & (rng.random(len(dist)) > dropout)
    ground = idx[keep] < 0
    # Reflectivity x incidence at the true hit, then noise; the range noise moves the point.
    hit_global = origin + dirs[keep] * dist[keep, None]
    refl = np.empty(keep.sum())
    cos_in = np.empty(keep.sum())
    lut = np.array([GROUND_REFLECTIVITY[c] for c in range(len(GROUND_REFLECTIVITY))])
    refl[ground] = lut[codes[keep][ground]] * world.patch_factor(hit_global[ground, :2])
    cos_in[ground] = np.abs(dirs[keep][ground, 2])
    obj = idx[keep][~ground]
    refl[~ground] = np.array([a.reflectivity for a in agents])[obj] if len(obj) else []
    retro = np.array([a.retroreflective for a in agents], bool)[obj] if len(obj) else np.zeros(0, bool)
    cos_in[~ground] = np.where(retro, 1.0, np.abs((normal[keep][~ground] * dirs[keep][~ground]).sum(1)))
    signal = refl * (DIFFUSE_FLOOR + (1.0 - DIFFUSE_FLOOR) * cos_in)
    # A weak echo is missed: dark surfaces seen at grazing incidence or far away return nothing.
    snr = signal * (DETECTION_REF_RANGE / np.maximum(dist[keep], 1.0)) ** 2
    seen = rng.random(len(snr)) < 1.0 - np.exp(-(snr / DETECTION_SNR) ** 2)
    keep[np.flatnonzero(keep)[~seen]] = False
    signal = signal[seen]
    intensity = signal * (1.0 + rng.normal(0.0, INTENSITY_NOISE_REL, len(signal)))
    intensity = np.clip(intensity + rng.normal(0.0, INTENSITY_NOISE_ABS, len(intensity)), 0.0, 255.0)
    dist = dist[keep] + rng.normal(0.0, range_noise, keep.sum())
    idx, local, ring = idx[keep], local[keep], ring[keep]
    pts_local = local * dist[:, None]
    pts = np.concatenate([pts_local, intensity[:, None], ring[:, None]], 1).astype(np.float32)
    return pts, idx


def _cell_noise(ij: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform [-1, 1) value per integer grid cell ``ij`` ([N, 2])."""
    h = (ij[:, 0].astype(np.uint64) * np.uint64(73856093)) ^ (ij[:, 1].astype(np.uint64) * np.uint64(19349663)) \
        ^ np.uint64(salt * 83492791)
    h = (h ^ (h >> np.uint64(13))) * np.uint64(0x5BD1E995) & np.uint64(0xFFFFFFFF)
    return (h ^ (h >> np.uint64(15))).astype(np.float64) / 2 ** 31 - 1.0


def ground_texture(xy: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Brightness factor of the ground at ``xy`` ([N, 2] global, m) with label ``codes``: the
    surface's texture, fixed in the world, so that its apparent scale shrinks with distance as a
    real road's does (a camera's monocular depth cue). Asphalt and car parks: aggregate patches of
    TEXTURE_CELL; grass: finer tufts; walkways: paving slabs with dark joints."""
    f = np.ones(len(xy))
    rough = np.isin(codes, [DRIVABLE, CARPARK, GROUND])
    cell = np.where(codes == GROUND, TEXTURE_CELL / 2, TEXTURE_CELL)
    ij = np.floor(xy / cell[:, None]).astype(np.int64)
    f[rough] += TEXTURE_CONTRAST * _cell_noise(ij[rough], 1)
    walk = codes == WALKWAY
    frac = np.mod(xy[walk] / SLAB_SIZE, 1.0)
    joint = (np.minimum(frac, 1.0 - frac) < SLAB_JOINT / SLAB_SIZE / 2).any(1)
    f[np.flatnonzero(walk)[joint]] = 0.7
    return f


def render_camera(world: World, agents: list[Agent], t: float, cam2global: np.ndarray, intrinsic: np.ndarray,
                  width: int, height: int, rng: np.random.Generator, max_range: float = 150.0,
                  return_labels: bool = False):
    """Render one camera image by ray casting.

    Args:
        world: map (ground colour by layer).
        agents: boxes, coloured by class and shaded by face orientation.
        t: time since the scene start, s.
        cam2global: [4, 4] camera pose (camera frame: x right, y down, z forward).
        intrinsic: [3, 3] pinhole intrinsics for this resolution.
        width, height: image size, px.
        rng: noise generator.
        max_range: ground beyond this fades to the horizon colour, m.
        return_labels: also return what every pixel sees (the image's semantic labels; no
            random draw depends on it, so the image is the same either way).

    Returns:
        ``(image, visible_px, total_px)``: [H, W, 3] uint8 RGB; per agent, the number of
        pixels where it is the nearest surface, and where its box is hit at all (used for
        the nuScenes visibility level). With ``return_labels`` a fourth item: [H, W] uint8,
        :data:`PIXEL_SKY` for the sky, ``PIXEL_GROUND + code`` for the ground's label code
        (``fuller.demo.world``: grass, drivable area, walkway, car park, crossing, stop line,
        divider) and ``PIXEL_OBJECT + i`` for an object of detection class ``i``.
    """
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
    rays_cam = pix @ np.linalg.inv(intrinsic).T
    rays_cam /= np.linalg.norm(rays_cam, axis=1, keepdims=True)
    rot, origin = cam2global[:3, :3], cam2global[:3, 3]
    dirs = rays_cam @ rot.T
    d_gnd, codes = cast_ground(world, origin, dirs)
    d_box, idx, normal, total = cast_boxes(origin, dirs, agents, t, max_range, forward=rot[:, 2])
    img = np.tile(SKY_RGB, (len(dirs), 1))
    ground = np.isfinite(d_gnd) & (d_gnd < d_box)
    lut = np.array([GROUND_RGB[c] for c in range(len(GROUND_RGB))], np.float64)
    gxy = origin[:2] + dirs[ground, :2] * d_gnd[ground, None]
    col = lut[codes[ground]] * ground_texture(gxy, codes[ground])[:, None]
    fog = np.exp(-d_gnd[ground] / max_range)[:, None]
    img[ground] = col * fog + SKY_RGB * (1 - fog)
    boxes = (idx >= 0) & (d_box <= d_gnd)
    visible = np.bincount(idx[boxes], minlength=len(agents))[: len(agents)]
    if boxes.any():
        base = np.array([CLASSES[agents[k].name][2] for k in range(len(agents))], np.float64)[idx[boxes]]
        yaws = np.array([a.yaw for a in agents])[idx[boxes]]
        front = (normal[boxes, :2] * np.stack([np.cos(yaws), np.sin(yaws)], 1)).sum(1) > 0.7
        base[front] = base[front] * (1 - FRONT_RGB_MIX) + 255.0 * FRONT_RGB_MIX
        shade = 0.45 + 0.55 * np.clip(normal[boxes] @ SUN, 0.0, 1.0)
        img[boxes] = base * shade[:, None]
    img = img + rng.normal(0.0, 3.0, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8).reshape(height, width, 3)
    if not return_labels:
        return img, visible, total
    labels = np.full(len(dirs), PIXEL_SKY, np.uint8)
    labels[ground] = PIXEL_GROUND + codes[ground]
    if boxes.any():
        class_index = {name: i for i, name in enumerate(CLASSES)}
        labels[boxes] = PIXEL_OBJECT + np.array([class_index[a.name] for a in agents], np.uint8)[idx[boxes]]
    return img, visible, total, labels.reshape(height, width)
