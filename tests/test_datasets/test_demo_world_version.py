"""The demo world's version (``fuller.demo.WORLD_VERSION``): what the generator writes is pinned
to it, the data records it, and the tools act on data of another version.

A change to the generator's output must come with a new ``WORLD_VERSION`` (and the new digests
here): ``tools/run_demo.sh`` then makes users' data again, ``tools/train.py``/``test.py`` warn
on old data, and ``tools/ablate.py`` retrains its runs instead of mixing old-world ones in.
"""

import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
from mmengine.config import Config
from pyquaternion import Quaternion

from fuller.analysis.study import demo_worlds, stale_reason
from fuller.datasets.create_infos import pose_matrix
from fuller.demo import MANIFEST, WORLD_VERSION, demo_data_problem, demo_world_version
from fuller.demo.generator import LIDAR_TRANSLATION, LIDAR_YAW, _ego_route, _pose, camera_calibration
from fuller.demo.objects import DEFAULT_COUNTS, sample_agents
from fuller.demo.sensors import lidar_sweep, render_camera
from fuller.demo.world import build_world
from fuller.engine.config import stale_demo_data

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# SHA-256 (16 hex digits) of the generator's output for each world version, its values rounded
# (1 cm, 0.01 of intensity, 1e-4 of a quaternion, whole 8-bit levels) so that the last bits of
# another CPU's floating point do not count.
PINNED = {
    '2026-12-03': {'sensors': 'f3c7d747fafb57ca', 'tables': 'c9778efc424bc939'},  # checked against 29eb8cf's generator
}


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _q(values, step: float) -> np.ndarray:
    return np.round(np.asarray(values, np.float64) / step).astype(np.int64)


def _sensors_digest() -> str:
    """One location's map, its objects, one camera image (64 x 36) and one LiDAR sweep (90
    firings per revolution), made with the generator's own functions."""
    rng = np.random.default_rng(7)
    world = build_world('boston-seaport', rng)
    ego_xy, ego_yaw = _ego_route(world, rng, 2, 0.5)
    agents = sample_agents(world, rng, ego_xy, DEFAULT_COUNTS)
    ego = pose_matrix([*ego_xy[0], 0.0], Quaternion(axis=[0, 0, 1], radians=ego_yaw[0]).elements)
    t, q, k = camera_calibration('CAM_FRONT', 0.04)
    image = render_camera(world, agents, 0.0, ego @ pose_matrix(t, q), np.asarray(k), 64, 36, rng)[0]
    pts, hit = lidar_sweep(world, agents, 0.0, ego @ pose_matrix(*_pose(LIDAR_TRANSLATION, LIDAR_YAW)), 90, rng)
    boxes = [[*a.center, *a.size, a.yaw] for a in agents]
    return _digest(world.raster, _q(boxes, 0.01), image, _q(pts[:, :3], 0.01), _q(pts[:, 3], 0.01), pts[:, 4], hit)


def _tables_digest(root: str) -> str:
    """The annotations and maps of a generated dataset (the session's tiny demo)."""
    with open(osp.join(root, 'v1.0-mini', 'sample_annotation.json')) as f:
        anns = sorted(json.load(f), key=lambda a: a['token'])
    parts = [_q([a['translation'] + a['size'] for a in anns], 0.01), _q([a['rotation'] for a in anns], 1e-4),
             np.array([a['num_lidar_pts'] for a in anns]),
             ''.join(a['token'] + a['visibility_token'] + ''.join(a['attribute_tokens']) for a in anns).encode()]
    for name in sorted(os.listdir(osp.join(root, 'maps', 'expansion'))):
        with open(osp.join(root, 'maps', 'expansion', name)) as f:
            nodes = json.load(f)['node']
        parts.append(_q([[n['x'], n['y']] for n in nodes], 0.01))
    return _digest(*parts)


def test_the_generators_output_is_that_of_its_world_version(demo_root):
    assert WORLD_VERSION in PINNED, f'no digests pinned for WORLD_VERSION {WORLD_VERSION!r}'
    got = {'sensors': _sensors_digest(), 'tables': _tables_digest(demo_root)}
    assert got == PINNED[WORLD_VERSION], (
        f'the demo generator writes another world than that of {WORLD_VERSION} (digests {got}). If that is '
        'meant, set fuller.demo.generator.WORLD_VERSION to the date of the change and pin these digests under it; '
        'if not, the change altered the data by accident')


def test_the_data_records_its_world_version_and_the_tools_see_it(demo_root, tmp_path, capsys):
    with open(osp.join(demo_root, MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest['world_version'] == WORLD_VERSION and manifest['config']['keyframes'] == 2
    assert demo_world_version(demo_root) == WORLD_VERSION and demo_data_problem(demo_root) is None
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='CBGSDataset', dataset=dict(data_root=demo_root))),
                      val_dataloader=dict(dataset=dict(data_root=demo_root))))
    assert stale_demo_data(cfg) == []
    # Data of another world: named with both versions; train/test warn, the study retrains.
    old = str(tmp_path / 'old')
    shutil.copytree(osp.join(demo_root, 'v1.0-mini'), osp.join(old, 'v1.0-mini'))
    with open(osp.join(old, MANIFEST), 'w') as f:
        json.dump({**manifest, 'world_version': '2000-01-01'}, f)
    problem = demo_data_problem(old)
    assert '2000-01-01' in problem and WORLD_VERSION in problem and old in problem
    cfg.val_dataloader.dataset.data_root = old
    assert stale_demo_data(cfg) == [problem]
    from fuller.engine import load_config

    def point_at_old(c):
        c.test_dataloader.dataset.data_root = old
    load_config(osp.join(osp.dirname(__file__), '..', '..', 'configs', 'fuller',
                         'fuller_lc_r18-tiny_1x2-900it_nuscenes-demo-det-map.py'), tool='test', edit=point_at_old)
    err = capsys.readouterr().err
    assert 'test: warning' in err and '2000-01-01' in err and 'run_demo.sh' in err
    # Data made before versions were recorded, and no data at all.
    os.remove(osp.join(old, MANIFEST))
    assert 'without demo_world.json' in demo_data_problem(old) and stale_demo_data(cfg) == []
    assert 'no demo data' in demo_data_problem(str(tmp_path / 'none'))


def test_the_study_retrains_runs_of_another_world(demo_root, tmp_path):
    config = tmp_path / 'variant.py'
    config.write_text(f'train_dataloader = dict(dataset=dict(data_root={demo_root!r}))\n'
                      f"test_dataloader = dict(dataset=dict(data_root='data/real-nuscenes/'))\n")
    worlds = demo_worlds(str(config))
    assert worlds == {demo_root: WORLD_VERSION}  # real nuScenes (no manifest) is not listed
    old = {'config_digest': 'd', 'worlds': {demo_root: '2000-01-01'}}
    assert stale_reason(old, 'd', {}, worlds) == f'another demo world ({demo_root}: 2000-01-01, today {WORLD_VERSION})'
    assert stale_reason({'config_digest': 'd', 'worlds': worlds}, 'd', {}, worlds) is None
    assert stale_reason({'config_digest': 'd'}, 'd', {}, worlds) is None  # recorded before world versions


def test_create_demo_data_only_if_stale_makes_old_data_again(tmp_path):
    """``tools/create_demo_data.py --only-if-stale`` (what tools/run_demo.sh runs): nothing to do on
    this world made with these knobs; another world version or other knobs make it again, with
    the info files of the old data removed."""
    out = str(tmp_path / 'demo')
    tiny = ['--keyframes', '1', '--sweeps', '0', '--image-scale', '0.02', '--azimuth-steps', '40']

    def run(*extra):
        proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'create_demo_data.py'), '--out', out,
                               '--only-if-stale', *tiny, *extra], capture_output=True, text=True, cwd=REPO,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert 'holds no demo data: making it' in run()
    scene = osp.join(out, 'v1.0-mini', 'scene.json')
    made = os.stat(scene).st_mtime_ns
    assert 'is up to date' in run() and os.stat(scene).st_mtime_ns == made
    with open(osp.join(out, MANIFEST)) as f:
        manifest = json.load(f)
    with open(osp.join(out, MANIFEST), 'w') as f:
        json.dump({**manifest, 'world_version': '2000-01-01'}, f)
    with open(osp.join(out, 'nuscenes_infos_val.pkl'), 'wb') as f:  # the old data's info file
        f.write(b'old')
    assert 'holds the demo world of 2000-01-01' in run()
    assert demo_world_version(out) == WORLD_VERSION and not osp.exists(osp.join(out, 'nuscenes_infos_val.pkl'))
    assert 'other knobs (keyframes=1)' in run('--keyframes', '2')
    with open(osp.join(out, MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest['config']['keyframes'] == 2
    # A knob newer than the manifest counts at its default (which writes what the older code did).
    del manifest['config']['lot_scenes']
    with open(osp.join(out, MANIFEST), 'w') as f:
        json.dump(manifest, f)
    assert 'is up to date' in run('--keyframes', '2')
    assert 'other knobs (lot_scenes=[])' in run('--keyframes', '2', '--lot-scenes', 'scene-0655')
    with open(scene) as f:
        descriptions = {s['name']: s['description'] for s in json.load(f)}
    assert descriptions['scene-0655'].endswith('parking lot') and 'parking' not in descriptions['scene-0061']
