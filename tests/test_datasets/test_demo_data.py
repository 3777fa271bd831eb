import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from shapely.geometry import Point

from fuller.datasets.transforms import MAP_CLASSES, LoadBEVMapMask
from fuller.datasets.transforms.map_raster import LocationMapLayers, rasterize_map


def test_devkit_loads_demo_and_map(demo_root):
    from nuscenes.map_expansion.map_api import NuScenesMap
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes('v1.0-mini', demo_root, verbose=False)
    assert len(nusc.scene) == 10 and len(nusc.sample) == 20
    assert {s['name'] for s in nusc.scene} >= {'scene-0103', 'scene-0916'}
    nmap = NuScenesMap(demo_root, 'boston-seaport')
    for layer in ('drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'road_divider', 'lane'):
        assert len(getattr(nmap, layer)) > 0, layer
    classes = {nusc.get('category', i['category_token'])['name'] for i in nusc.instance}
    assert len(classes) == 10


def test_devkit_detection_eval_gt_as_predictions(demo_root, tmp_path):
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval
    from nuscenes.nuscenes import NuScenes

    from fuller.testing import gt_submission

    nusc = NuScenes('v1.0-mini', demo_root, verbose=False)
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(gt_submission(nusc)))
    ev = DetectionEval(nusc, config_factory('detection_cvpr_2019'), str(path), 'mini_val', str(tmp_path), verbose=False)
    metrics, _ = ev.evaluate()
    present = [c for c, ap in metrics.mean_dist_aps.items() if not np.isnan(ap) and ap > 0]
    assert len(present) >= 8
    for c in present:
        assert metrics.mean_dist_aps[c] > 0.99, c


def _project(points_lidar: np.ndarray, lidar2cam: np.ndarray, cam2img: np.ndarray):
    p = np.c_[points_lidar, np.ones(len(points_lidar))] @ lidar2cam.T
    z = p[:, 2]
    uv = p[:, :3] @ np.asarray(cam2img)[:3, :3].T
    return uv[:, :2] / np.maximum(z[:, None], 1e-6), z


def _corners(box) -> np.ndarray:
    x, y, z, l, w, h, yaw = box[:7]
    c = np.array([[sx * l / 2, sy * w / 2, sz * h / 2] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    r = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    return c @ r.T + np.array([x, y, z])


def check_points_project_into_boxes(info: dict, points: np.ndarray, min_checked: int) -> int:
    """LiDAR points inside each annotated box project inside that box's 2D projection."""
    checked = 0
    for inst in info['instances']:
        box = np.asarray(inst['bbox_3d'])
        x, y, z, l, w, h, yaw = box[:7]
        d = points[:, :3] - [x, y, z]
        local = d @ np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        inside = (np.abs(local[:, 0]) <= l / 2) & (np.abs(local[:, 1]) <= w / 2) & (np.abs(local[:, 2]) <= h / 2)
        if inside.sum() < 3:
            continue
        for cam in info['images'].values():
            l2c, k = np.asarray(cam['lidar2cam']), np.asarray(cam['cam2img'])
            cuv, cz = _project(_corners(box), l2c, k)
            if (cz <= 0.5).any():
                continue
            puv, pz = _project(points[inside, :3], l2c, k)
            lo, hi = cuv.min(0) - 2, cuv.max(0) + 2
            assert ((puv >= lo) & (puv <= hi)).all(), f'points of a box project outside it in {cam["img_path"]}'
            checked += 1
    assert checked >= min_checked
    return checked


def test_demo_lidar_points_project_inside_boxes(demo_root):
    with open(osp.join(demo_root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        infos = pickle.load(f)['data_list']
    info = infos[0]
    pts = np.fromfile(osp.join(demo_root, 'samples', 'LIDAR_TOP', info['lidar_points']['lidar_path']),
                      np.float32).reshape(-1, 5)
    check_points_project_into_boxes(info, pts, min_checked=5)


def test_map_mask_matches_polygons(demo_root):
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    t = LoadBEVMapMask(demo_root, xbound=(-30, 30, 0.5), ybound=(-30, 30, 0.5))
    mask = t.transform(dict(info, token=info['token']))['gt_map']
    geom = LocationMapLayers(demo_root, info['location'])
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    lidar2global = np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego'])
    cs = np.arange(-30 + 0.25, 30, 0.5)
    gy, gx = np.meshgrid(cs, cs, indexing='ij')
    pts = np.c_[gx.ravel(), gy.ravel(), np.zeros(gx.size), np.ones(gx.size)] @ lidar2global.T
    for c, cls in enumerate(MAP_CLASSES):
        if cls == 'divider':
            continue
        union = unary_union([Polygon(e, h) for e, h in geom.polygons[cls]]).buffer(0)
        truth = np.array([union.contains(Point(p[0], p[1])) for p in pts[:, :2]]).reshape(gx.shape)
        # Cell centres on a polygon edge (an axis-aligned ego at a lane centre puts whole columns
        # there) may go either way: compare the others.
        edge = np.array([union.boundary.distance(Point(p[0], p[1])) < 1e-6 for p in pts[:, :2]]).reshape(gx.shape)
        agree = (truth == mask[c].astype(bool))[~edge].mean()
        assert agree > 0.985, (cls, agree)
        if cls == 'drivable_area':
            assert truth.mean() > 0.05


def test_map_culling_by_cached_bounds_draws_what_uncached_culling_draws(demo_root):
    """rasterize_map culls far geometry by the bounds LocationMapLayers computes once; an object
    with only ``polygons`` and ``lines`` has them computed per call: the same masks, near the
    map and far from it (nothing drawn)."""
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    geom = LocationMapLayers(demo_root, info['location'])
    for cls in MAP_CLASSES:
        b = geom.polygon_bounds[cls]
        assert b.shape == (len(geom.polygons[cls]), 4)
        if len(b):
            np.testing.assert_array_equal(b[0], np.r_[geom.polygons[cls][0][0].min(0), geom.polygons[cls][0][0].max(0)])

    class Plain:
        polygons, lines = geom.polygons, geom.lines

    to_lidar = np.linalg.inv(np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego']))
    for yaw, shift in ((0.0, 0.0), (0.7, 12.0), (2.5, -30.0), (0.0, 5000.0)):
        m = np.eye(3)
        m[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        m = m @ np.r_[np.c_[to_lidar[:2, :2], to_lidar[:2, 3] + shift], [[0, 0, 1]]]
        cached = rasterize_map(geom, m, (-50, 50, 0.5), (-50, 50, 0.5))
        np.testing.assert_array_equal(cached, rasterize_map(Plain, m, (-50, 50, 0.5), (-50, 50, 0.5)))
        assert cached.any() == (shift < 1000)


def _reference_raster(geom, g2b, xbound, ybound, line_width=1.0):
    """rasterize_map's definition without its shortcuts: every ring (exterior 1, then its holes
    0, in order) tested at every cell centre of the grid, lines drawn as rasterize_map draws them."""
    import cv2
    from matplotlib.path import Path

    nx, ny = round((xbound[1] - xbound[0]) / xbound[2]), round((ybound[1] - ybound[0]) / ybound[2])
    ii, jj = np.meshgrid(np.arange(ny), np.arange(nx), indexing='ij')
    centres = np.c_[jj.ravel(), ii.ravel()]

    def to_uv(xy):
        p = xy[:, :2] @ g2b[:2, :2].T + g2b[:2, 2]
        return np.stack([(p[:, 0] - xbound[0]) / xbound[2] - 0.5, (p[:, 1] - ybound[0]) / ybound[2] - 0.5], 1)

    out = np.zeros((len(MAP_CLASSES), ny, nx), np.uint8)
    for c, cls in enumerate(MAP_CLASSES):
        flat = out[c].reshape(-1)
        for ext, holes in geom.polygons[cls]:
            for ring, value in [(ext, 1)] + [(h, 0) for h in holes]:
                flat[Path(to_uv(ring)).contains_points(centres)] = value
        for line in geom.lines[cls]:
            px = np.round(to_uv(line) * 16).astype(np.int32)
            cv2.polylines(out[c], [px], False, 1, thickness=max(1, round(line_width / xbound[2])),
                          lineType=cv2.LINE_8, shift=4)
    return out


def test_map_raster_equals_its_definition(demo_root):
    """Each cell is set exactly when its centre lies in a polygon (holes cut out), whatever the
    pose: the bounding-window and culling shortcuts change no cell, also where the axis-aligned
    ego puts whole columns of centres on lane edges."""
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    geom = LocationMapLayers(demo_root, info['location'])
    to_lidar = np.linalg.inv(np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego']))
    for yaw, shift, bound in ((0.0, 0.0, (-50, 50, 1.0)), (0.0, 0.25, (-50, 50, 0.5)), (0.7, 12.0, (-30, 30, 0.5)),
                              (-2.0, -40.0, (-50.0, 50.0, 1.0))):
        m = np.eye(3)
        m[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        m = m @ np.r_[np.c_[to_lidar[:2, :2], to_lidar[:2, 3] + shift], [[0, 0, 1]]]
        got = rasterize_map(geom, m, bound, bound)
        assert got.any()
        np.testing.assert_array_equal(got, _reference_raster(geom, m, bound, bound), err_msg=f'{yaw} {shift}')


def test_map_raster_follows_bev_flip(demo_root):
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    # 0.4 m cells: no cell centre falls exactly on a lane edge (edges sit at 1.75 + 3.5k m).
    t = LoadBEVMapMask(demo_root, xbound=(-20, 20, 0.4), ybound=(-20, 20, 0.4))
    base = t.transform(dict(info))['gt_map']
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flipped = t.transform(dict(info, lidar_aug_matrix=flip))['gt_map']
    np.testing.assert_array_equal(flipped[:, ::-1][:5], base[:5])


def test_rasterize_simple_square():
    class G:
        polygons = {c: [] for c in MAP_CLASSES}
        lines = {c: [] for c in MAP_CLASSES}

    G.polygons['walkway'] = [(np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0], [0.0, 0.0]]), [])]
    m = rasterize_map(G, np.eye(3), (-2, 2, 0.5), (-2, 2, 0.5))
    expect = np.zeros((8, 8), np.uint8)
    expect[4:6, 4:8] = 1  # cells whose centres lie in x in [0, 2], y in [0, 1]
    np.testing.assert_array_equal(m[MAP_CLASSES.index('walkway')], expect)


@pytest.mark.parametrize('bad', ['missing', 'truncated'])
def test_bad_point_cloud_names_the_file(tmp_path, bad):
    from fuller.datasets.transforms import DataFileError, LoadMultiSweepPoints

    path = tmp_path / 'x.pcd.bin'
    if bad == 'truncated':
        np.zeros(5 * 10 + 3, np.float32).tofile(path)
    with pytest.raises(DataFileError, match='x.pcd.bin'):
        LoadMultiSweepPoints(sweeps=0).transform({'lidar_points': {'lidar_path': str(path)}, 'timestamp': 0.0})


def test_missing_and_corrupt_image_names_the_file(tmp_path):
    from fuller.datasets.transforms import DataFileError, LoadMultiViewImages

    info = {'cam2img': np.eye(3).tolist(), 'lidar2cam': np.eye(4).tolist()}
    with pytest.raises(DataFileError, match='nope.jpg'):
        LoadMultiViewImages(cameras=('CAM_FRONT',)).transform(
            {'images': {'CAM_FRONT': dict(info, img_path=str(tmp_path / 'nope.jpg'))}})
    (tmp_path / 'bad.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(DataFileError, match='bad.jpg'):
        LoadMultiViewImages(cameras=('CAM_FRONT',)).transform(
            {'images': {'CAM_FRONT': dict(info, img_path=str(tmp_path / 'bad.jpg'))}})


def _one_camera(tmp_path, w=640, h=360, **info):
    import cv2

    path = tmp_path / 'cam.png'
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
    k = [[300.0, 0.0, 159.5], [0.0, 300.0, 89.5], [0.0, 0.0, 1.0]]
    return {'token': 'tok', 'images': {'CAM_FRONT': {'img_path': str(path), 'cam2img': k,
                                                     'lidar2cam': np.eye(4).tolist(), 'width': 320, 'height': 180,
                                                     **info}}}


def test_image_of_another_size_than_its_info_is_refused_or_rescaled(tmp_path):
    """An image of 640x360 where the info (and the calibration) says 320x180 would misplace that
    camera's features: refused naming the file, or, when asked, the intrinsics follow the image
    (so the same 3D point projects to the same place in the image)."""
    from fuller.datasets.transforms import DataFileError, LoadMultiViewImages

    results = _one_camera(tmp_path)
    with pytest.raises(DataFileError, match=r'CAM_FRONT image .*cam.png is 640x360 but its info states 320x180'):
        LoadMultiViewImages(cameras=('CAM_FRONT',)).transform(results)
    out = LoadMultiViewImages(cameras=('CAM_FRONT',), on_size_mismatch='rescale').transform(_one_camera(tmp_path))
    k = out['cam2img'][0]
    # Pixel centres at integers: the 320x180 centre (159.5, 89.5) is the 640x360 centre (319.5, 179.5).
    np.testing.assert_allclose(k[:3, :3], [[600.0, 0.0, 319.5], [0.0, 600.0, 179.5], [0.0, 0.0, 1.0]])
    same = LoadMultiViewImages(cameras=('CAM_FRONT',)).transform(_one_camera(tmp_path, w=320, h=180))
    assert same['imgs'][0].shape == (180, 320, 3)


def test_images_load_as_float_rgb(tmp_path):
    """The loaded image is the file's pixels as float32 RGB (OpenCV decodes BGR), every value
    exact: BEVFusion's pipeline and the pretrained weights expect RGB 0-255."""
    import cv2

    from fuller.datasets.transforms import LoadMultiViewImages

    results = _one_camera(tmp_path, w=320, h=180)
    bgr = np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8)
    cv2.imwrite(results['images']['CAM_FRONT']['img_path'], bgr)  # PNG: lossless
    img = LoadMultiViewImages(cameras=('CAM_FRONT',)).transform(results)['imgs'][0]
    assert img.dtype == np.float32 and img.flags.c_contiguous
    np.testing.assert_array_equal(img, bgr[:, :, ::-1].astype(np.float32))


def test_pack_stacks_images_channels_first():
    """PackMultiTaskInputs: ``imgs`` [N, 3, H, W], contiguous, image i's channel c at [i, c] (the
    values of np.stack(imgs).transpose(0, 3, 1, 2)); images of different sizes are refused."""
    from fuller.datasets.transforms import PackMultiTaskInputs

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.uint8):
        imgs = [rng.integers(0, 256, (4, 7, 3)).astype(dtype) for _ in range(6)]
        got = PackMultiTaskInputs().transform({'imgs': imgs})['inputs']['imgs']
        assert got.is_contiguous() and got.dtype == torch.from_numpy(imgs[0]).dtype
        np.testing.assert_array_equal(got.numpy(), np.stack(imgs).transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r'different shapes \(4, 7, 3\) and \(4, 8, 3\) \(image 1\)'):
        PackMultiTaskInputs().transform({'imgs': [imgs[0], np.zeros((4, 8, 3), np.uint8)]})


@pytest.mark.parametrize('key', ['cam2img', 'lidar2cam'])
def test_non_finite_camera_matrix_is_refused(tmp_path, key):
    from fuller.datasets.transforms import DataFileError, LoadMultiViewImages

    results = _one_camera(tmp_path, w=320, h=180)
    m = np.asarray(results['images']['CAM_FRONT'][key], dtype=np.float64)
    m[0, 0] = np.nan
    results['images']['CAM_FRONT'][key] = m.tolist()
    with pytest.raises(DataFileError, match=f'sample tok: CAM_FRONT {key} in its info is not finite'):
        LoadMultiViewImages(cameras=('CAM_FRONT',)).transform(results)


def test_wrong_info_version_names_the_file(demo_root, tmp_path):
    from mmengine.registry import init_default_scope

    from fuller.registry import DATASETS

    init_default_scope('fuller')
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        data = pickle.load(f)
    data['metainfo']['info_version'] = '1.0'
    bad = tmp_path / 'old_infos.pkl'
    with open(bad, 'wb') as f:
        pickle.dump(data, f)
    with pytest.raises(ValueError, match='old_infos.pkl'):
        DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(bad), pipeline=[]))


def test_bad_sample_errors_or_is_skipped_by_config(demo_root, tmp_path):
    from mmengine.registry import init_default_scope

    from fuller.datasets.transforms import DataFileError
    from fuller.registry import DATASETS

    init_default_scope('fuller')
    with open(osp.join(demo_root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        data = pickle.load(f)
    data['data_list'][0]['lidar_points']['lidar_path'] = 'gone.pcd.bin'
    ann = tmp_path / 'infos.pkl'
    with open(ann, 'wb') as f:
        pickle.dump(data, f)
    base = dict(type='NuScenesMultiTaskDataset', data_root=demo_root, ann_file=str(ann),
                pipeline=[dict(type='LoadMultiSweepPoints', sweeps=0), dict(type='PackMultiTaskInputs')],
                filter_empty_gt=False)
    with pytest.raises(FileNotFoundError, match='data file not found: .*gone.pcd.bin'):  # the build-time check
        DATASETS.build(base)
    base['check_files'] = 0  # from here on: the same file met when the sample is loaded
    with pytest.raises(DataFileError, match='gone.pcd.bin'):
        DATASETS.build(base)[0]
    ds = DATASETS.build(dict(base, on_bad_sample='skip'))
    out = ds[0]
    assert 'gone' not in out['data_samples'].metainfo['lidar_path'] and len(out['inputs']['points'])
    assert len(ds.bad_samples) == 1 and 'gone.pcd.bin' in ds.bad_samples[0]
    with pytest.raises(DataFileError, match='gone.pcd.bin'):
        DATASETS.build(dict(base, on_bad_sample='skip', test_mode=True))[0]
    with pytest.raises(ValueError, match='on_bad_sample'):
        DATASETS.build(dict(base, on_bad_sample='ignore'))


def _one_agent_scene():
    from fuller.demo.objects import Agent

    car = Agent('car', np.array([12.0, 3.0, 0.85]), np.array([1.95, 4.6, 1.7]), 0.4, np.zeros(2), 'vehicle.parked')
    return [car]


def test_cast_boxes_cone_culling_keeps_every_hit():
    """Rays are pre-selected by the object's bounding-sphere cone; a brute-force slab test of
    every part over all rays finds exactly the same hits."""
    from fuller.demo.objects import agent_parts
    from fuller.demo.sensors import cast_boxes, yaw_matrix

    rng = np.random.default_rng(0)
    agents = _one_agent_scene()
    origin = np.array([0.0, 0.0, 1.8])
    dirs = rng.normal(size=(20000, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dist, idx, _, cov = cast_boxes(origin, dirs, agents, 0.0, 70.0)
    a = agents[0]
    rot = yaw_matrix(a.yaw)
    d = dirs @ rot
    near_all = np.full(len(dirs), np.inf)
    for offset, half in agent_parts(a):
        o = rot.T @ (origin - a.center) - offset
        with np.errstate(divide='ignore', invalid='ignore'):
            t1, t2 = (-half - o) / d, (half - o) / d
        near, far = np.nanmax(np.minimum(t1, t2), 1), np.nanmin(np.maximum(t1, t2), 1)
        hit = (near <= far) & (far > 0) & (near > 0)
        near_all = np.where(hit, np.minimum(near_all, near), near_all)
    brute = np.isfinite(near_all)
    assert brute.sum() > 50
    np.testing.assert_array_equal(idx >= 0, brute)
    np.testing.assert_allclose(dist[brute], near_all[brute])
    assert cov[0] == brute.sum()


def test_vehicles_show_their_heading_to_lidar_and_cameras():
    """A vehicle's front is a lower nose inside its box (LiDAR sees it), and its front face is
    lighter in the cameras: a plain box looks the same from the front and the back."""
    from fuller.demo.sensors import lidar_sweep, render_camera
    from fuller.demo.world import build_world

    rng = np.random.default_rng(0)
    world = build_world('boston-seaport', np.random.default_rng(0))
    car = _one_agent_scene()[0]
    heading = np.array([np.cos(car.yaw), np.sin(car.yaw)])
    side = np.array([-heading[1], heading[0]])
    pos = car.center[:2] + 8.0 * side  # LiDAR beside the car, sees its whole length
    pose = np.eye(4)
    pose[:3, 3] = [pos[0], pos[1], 2.5]
    pts, hit = lidar_sweep(world, [car], 0.0, pose, 1800, rng, dropout=0.0)
    on_car = pts[hit == 0]
    along = (on_car[:, :2] + pos - car.center[:2]) @ heading
    z = on_car[:, 2] + 2.5
    front, rear = z[along > car.size[1] * 0.3], z[along < -car.size[1] * 0.3]
    assert len(front) > 10 and len(rear) > 10
    assert front.max() < 0.7 * car.size[2] < rear.max()
    k = np.array([[200.0, 0, 160], [0, 200.0, 90], [0, 0, 1]])
    means = []
    for sign in (1.0, -1.0):  # camera looking at the front, then at the back
        eye = car.center[:2] + sign * 12.0 * heading
        fwd = -sign * np.r_[heading, 0.0]
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        cam = np.eye(4)
        cam[:3, :3] = np.stack([right, [0.0, 0.0, -1.0], fwd], 1)
        cam[:3, 3] = [eye[0], eye[1], 0.6]
        img, vis, _ = render_camera(world, [car], 0.0, cam, k, 320, 180, np.random.default_rng(0))
        assert vis[0] > 100
        means.append(img[88:100, 150:170].astype(float).mean())
    assert means[0] > means[1] + 40


def test_create_infos_on_a_partial_root_writes_the_split_it_has(demo_root, tmp_path, monkeypatch):
    """A nuScenes root holding only the val scenes (a partial download) gets its val infos and a
    warning for train, not an error; a root with neither split is an error naming the version."""
    import fuller.datasets.create_infos as ci

    real = ci.create_splits_scenes()
    monkeypatch.setattr(ci, 'create_splits_scenes', lambda: {**real, 'mini_train': ['scene-9999']})
    with pytest.warns(UserWarning, match='none of the 1 scenes of the mini_train split.*no train info file'):
        written = ci.create_nuscenes_infos(demo_root, 'v1.0-mini', str(tmp_path / 'part'), max_sweeps=1)
    assert set(written) == {'val'} and osp.isfile(written['val'])
    monkeypatch.setattr(ci, 'create_splits_scenes',
                        lambda: {**real, 'mini_train': ['scene-9999'], 'mini_val': ['scene-9998']})
    with pytest.raises(ValueError, match=r'v1.0-mini: none of the scenes of the mini_train and mini_val split'):
        with pytest.warns(UserWarning):
            ci.create_nuscenes_infos(demo_root, 'v1.0-mini', str(tmp_path / 'none'), max_sweeps=1)


def test_a_parking_lot_scene_drives_through_a_large_car_park():
    """``DemoConfig.lot_scenes``: the location gets one large car park in a block, behind a road's
    walkway, in the map layers and the sensors' raster; the ego crosses it at walking pace."""
    from shapely.geometry import Point
    from shapely.ops import unary_union

    from fuller.demo.generator import _lot_route
    from fuller.demo.world import CARPARK, WALKWAY_WIDTH, _strip, add_parking_lot, build_world

    rng = np.random.default_rng(3)
    world = build_world('singapore-queenstown', rng)
    lots_before = len(world.layers['carpark_area'])
    lot = add_parking_lot(world, rng)
    assert lot.geom_type == 'Polygon' and lot.area >= 60 * 30
    roads = unary_union([_strip(r, -r.half_width, r.half_width, world.size) for r in world.roads])
    assert lot.intersection(roads.buffer(WALKWAY_WIDTH - 0.01)).area < 1e-6  # neither on a road nor its walkways
    assert any(cp.contains(lot) for cp in world.layers['carpark_area'])
    assert any(d.contains(lot) for d in world.layers['drivable_area'])
    assert len(world.layers['carpark_area']) <= lots_before + 1
    x0, y0, x1, y1 = lot.bounds
    grid = np.stack(np.meshgrid(np.linspace(x0 + 0.5, x1 - 0.5, 20), np.linspace(y0 + 0.5, y1 - 0.5, 20)), -1)
    assert (world.label_at(grid.reshape(-1, 2)) == CARPARK).all()
    xy, yaw = _lot_route(lot, rng, 24, 0.5)
    assert all(lot.buffer(-5.0).contains(Point(p)) for p in xy)
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.5
    np.testing.assert_allclose(speed, speed[0])
    assert 2.0 <= speed[0] <= 3.0
    heading = np.array([np.cos(yaw[0]), np.sin(yaw[0])])
    np.testing.assert_allclose((xy[1] - xy[0]) / np.linalg.norm(xy[1] - xy[0]), heading, atol=1e-9)


def test_lot_scenes_must_be_demo_scenes(tmp_path):
    from fuller.demo import DemoConfig, generate_demo_dataset

    with pytest.raises(ValueError, match=r"\['scene-065'\] are not demo scenes.*scene-0655"):
        generate_demo_dataset(str(tmp_path), DemoConfig(lot_scenes=('scene-065',)), verbose=False)
    assert not any(tmp_path.iterdir())


def test_sweep_loading_follows_mmdet3d_s_options(tmp_path):
    """``LoadMultiSweepPoints``' options of mmdet3d's and BEVFusion's ``LoadPointsFromMultiSweeps``
    (mit-han-lab/bevfusion ``mmdet3d/datasets/pipelines/loading.py``): ``_remove_close`` drops the
    points with |x| < r and |y| < r (``close_region='square'``); with more sweeps than asked,
    training draws them at random without replacement (``test_mode=False``) and testing takes the
    nearest; ``pad_empty_sweeps`` repeats the keyframe (close points removed, time lag 0) where
    there are no sweeps."""
    from fuller.datasets.transforms import LoadMultiSweepPoints

    def cloud(name, xy):
        pts = np.zeros((len(xy), 5), np.float32)
        pts[:, :2] = xy
        pts[:, 3] = 7.0
        pts.tofile(tmp_path / name)
        return str(tmp_path / name)

    # (0.9, 0.9) is 1.27 m away: inside the 2 m square, outside the 1 m disc
    xy = [[0.5, 0.0], [0.9, 0.9], [1.5, 0.0], [10.0, 5.0]]
    key = cloud('key.bin', xy)
    sweeps = [{'lidar_points': {'lidar_path': cloud(f's{i}.bin', xy), 'lidar2sensor': np.eye(4).tolist()},
               'timestamp': 10.0 - 0.05 * (i + 1)} for i in range(3)]
    base = {'lidar_points': {'lidar_path': key}, 'timestamp': 10.0}

    def lags(t, swps):
        p = t.transform(dict(base, lidar_sweeps=swps))['points'].tensor.numpy()
        return p, np.round(np.unique(p[:, 4]).astype(np.float64), 3)

    p, lag = lags(LoadMultiSweepPoints(sweeps=1, close_region='square'), sweeps)
    assert len(p) == 4 + 2 and set(lag) == {0.0, 0.05}  # the nearest sweep; (0.5, 0) and (0.9, 0.9) gone
    p, _ = lags(LoadMultiSweepPoints(sweeps=1), sweeps)
    assert len(p) == 4 + 3  # FULLER's default: the 1 m disc keeps (0.9, 0.9)
    np.random.seed(0)
    drawn = {tuple(lags(LoadMultiSweepPoints(sweeps=2, test_mode=False), sweeps)[1]) for _ in range(30)}
    assert drawn == {(0.0, 0.05, 0.1), (0.0, 0.05, 0.15), (0.0, 0.1, 0.15)}  # two distinct sweeps each time
    p, lag = lags(LoadMultiSweepPoints(sweeps=3, test_mode=False), sweeps[:2])  # fewer than asked: all
    assert set(lag) == {0.0, 0.05, 0.1}
    p, lag = lags(LoadMultiSweepPoints(sweeps=9, pad_empty_sweeps=True, close_region='square'), [])
    assert len(p) == 4 + 9 * 2 and set(lag) == {0.0} and (p[:, 3] == 7.0).all()
    assert len(lags(LoadMultiSweepPoints(sweeps=9), [])[0]) == 4
    with pytest.raises(ValueError, match="close_region must be 'disc' or 'square'"):
        LoadMultiSweepPoints(close_region='circle')


def _rigid(yaw: float, t: tuple) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    m = np.eye(4)
    m[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    m[:3, 3] = t
    return m


def test_sweeps_reach_the_keyframe_frame_exactly_while_the_ego_turns(tmp_path):
    """A sweep's points land where its pose puts them (p_key = R p + t, BEVFusion's sensor2lidar
    transform), from mmdet3d's info layout (``lidar2sensor`` the inverse of sweep2lidar, with
    ``lidar2ego``): at a 20 degree turn 6 m back, mmdet3d 1.x's ``p @ R - u``
    (open-mmlab/mmdetection3d#3054) would be off by about 2 m. FULLER's info files written before
    2026-12-05 (``[R | -t]``, no ``lidar2ego``) load as before, exactly too."""
    from fuller.datasets.transforms import LoadMultiSweepPoints

    rng = np.random.default_rng(0)
    pts = np.zeros((50, 5), np.float32)
    pts[:, :3] = rng.uniform(-30, 30, (50, 3))
    pts.tofile(tmp_path / 's.bin')
    np.zeros((1, 5), np.float32).tofile(tmp_path / 'key.bin')
    sweep2lidar = _rigid(np.deg2rad(20.0), (-6.0, 1.5, 0.05))
    want = pts[:, :3].astype(np.float64) @ sweep2lidar[:3, :3].T + sweep2lidar[:3, 3]
    inverse = np.linalg.inv(sweep2lidar)
    old = np.eye(4)
    old[:3, :3], old[:3, 3] = sweep2lidar[:3, :3].T, -sweep2lidar[:3, 3]
    for lidar_points in ({'lidar2sensor': inverse.tolist(), 'lidar2ego': np.eye(4).tolist()},
                         {'lidar2sensor': old.tolist()}):
        info = {'lidar_points': {'lidar_path': str(tmp_path / 'key.bin')}, 'timestamp': 1.0,
                'lidar_sweeps': [{'lidar_points': {'lidar_path': str(tmp_path / 's.bin'), **lidar_points},
                                  'timestamp': 0.95}]}
        got = LoadMultiSweepPoints(sweeps=1, remove_close=0.0).transform(info)['points'].tensor.numpy()
        np.testing.assert_allclose(got[1:, :3], want, atol=1e-4)
    mmdet3d_1x = pts[:, :3] @ inverse[:3, :3] - inverse[:3, 3]
    assert np.abs(mmdet3d_1x - want).max() > 1.5


def test_sweep_transforms_of_created_infos_match_the_devkit_poses(demo_root):
    """Each sweep of the created infos: mmdet3d's layout (``lidar2ego``, ``lidar2sensor`` the
    inverse of the sweep-to-keyframe transform), and its points through the loader where the
    devkit's calibration and ego poses put them (sweep LiDAR -> ego -> global -> keyframe ego ->
    keyframe LiDAR)."""
    from nuscenes import NuScenes
    from pyquaternion import Quaternion

    from fuller.datasets.transforms.loading import sweep_to_keyframe

    def pose(rec):
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = Quaternion(rec['rotation']).rotation_matrix, rec['translation']
        return m

    nusc = NuScenes('v1.0-mini', demo_root, verbose=False)

    def sensor2global(sd_token):
        sd = nusc.get('sample_data', sd_token)
        return pose(nusc.get('ego_pose', sd['ego_pose_token'])) @ pose(nusc.get('calibrated_sensor',
                                                                                 sd['calibrated_sensor_token']))

    with open(osp.join(demo_root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        infos = pickle.load(f)['data_list']
    checked = 0
    for info in infos[:6]:
        key = sensor2global(nusc.get('sample', info['token'])['data']['LIDAR_TOP'])
        for sweep in info['lidar_sweeps']:
            s2k = np.linalg.inv(key) @ sensor2global(sweep['sample_data_token'])
            lp = sweep['lidar_points']
            sd = nusc.get('sample_data', sweep['sample_data_token'])
            np.testing.assert_allclose(lp['lidar2ego'], pose(nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])),
                                       atol=1e-9)
            np.testing.assert_allclose(np.asarray(lp['lidar2sensor']) @ s2k, np.eye(4), atol=1e-6)
            xyz = np.random.default_rng(checked).uniform(-40, 40, (20, 3)).astype(np.float32)
            np.testing.assert_allclose(sweep_to_keyframe(xyz, lp), xyz @ s2k[:3, :3].T + s2k[:3, 3], atol=1e-3)
            checked += 1
    assert checked >= 6


def test_disc_close_filter_keeps_what_the_norm_keeps():
    """The disc filter's root of x * x + y * y is np.linalg.norm's: the same points kept, also
    at the radius (points a float32 ulp either side of it)."""
    from fuller.datasets.transforms import LoadMultiSweepPoints

    rng = np.random.default_rng(0)
    pts = np.zeros((200_000, 5), np.float32)
    pts[:100_000, :2] = rng.normal(0, 2, (100_000, 2))
    angle = rng.uniform(0, 2 * np.pi, 100_000)
    radius = np.float32(1.0) + rng.integers(-3, 4, 100_000).astype(np.float32) * np.finfo(np.float32).eps
    pts[100_000:, 0], pts[100_000:, 1] = radius * np.cos(angle), radius * np.sin(angle)
    got = LoadMultiSweepPoints(remove_close=1.0)._far(pts)
    np.testing.assert_array_equal(got, pts[np.linalg.norm(pts[:, :2], axis=1) >= 1.0])
    assert 0 < len(got) < len(pts)
