"""Info files (mmdet3d 1.x layout, ``info_version`` 1.1) for nuScenes and the demo dataset.

Each sample's info carries what mmdet3d's loaders expect (``lidar_points``,
``lidar_sweeps``, ``images`` with ``cam2img``/``lidar2cam``/``cam2ego``, ``instances`` with
boxes in the LiDAR frame) plus what map segmentation needs: the map ``location`` and
``ego2global``/``lidar2ego`` to rasterize the map around the LiDAR.
"""

import os.path as osp
import pickle
import warnings

import numpy as np
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.splits import create_splits_scenes
from pyquaternion import Quaternion
from tqdm import tqdm

from .metainfo import CAMERAS, CATEGORY_TO_CLASS, CLASSES

INFO_VERSION = '1.1'


def pose_matrix(translation, rotation) -> np.ndarray:
    """4x4 transform of a nuScenes pose (translation, quaternion w, x, y, z)."""
    m = np.eye(4)
    m[:3, :3] = Quaternion(rotation).rotation_matrix
    m[:3, 3] = translation
    return m


def _sensor_poses(nusc: NuScenes, sd_token: str) -> tuple[np.ndarray, np.ndarray]:
    sd = nusc.get('sample_data', sd_token)
    cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
    ep = nusc.get('ego_pose', sd['ego_pose_token'])
    return pose_matrix(cs['translation'], cs['rotation']), pose_matrix(ep['translation'], ep['rotation'])


def sample_info(nusc: NuScenes, sample: dict, max_sweeps: int) -> dict:
    """Build the info dict of one keyframe."""
    lidar_token = sample['data']['LIDAR_TOP']
    lidar_sd = nusc.get('sample_data', lidar_token)
    lidar2ego, ego2global = _sensor_poses(nusc, lidar_token)
    lidar2global = ego2global @ lidar2ego
    global2lidar = np.linalg.inv(lidar2global)
    scene = nusc.get('scene', sample['scene_token'])
    location = nusc.get('log', scene['log_token'])['location']
    info = {
        'token': sample['token'],
        'timestamp': sample['timestamp'] / 1e6,
        'scene_token': sample['scene_token'],
        'location': location,
        'ego2global': ego2global.tolist(),
        'lidar_points': {
            'num_pts_feats': 5,
            'lidar_path': osp.basename(lidar_sd['filename']),
            'lidar2ego': lidar2ego.tolist(),
        },
        'images': {},
        'lidar_sweeps': [],
        'instances': [],
    }
    for cam in CAMERAS:
        if cam not in sample['data']:
            continue
        sd = nusc.get('sample_data', sample['data'][cam])
        cam2ego, cam_ego2global = _sensor_poses(nusc, sd['token'])
        cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
        cam2global = cam_ego2global @ cam2ego
        info['images'][cam] = {
            'img_path': osp.basename(sd['filename']),
            'cam2img': cs['camera_intrinsic'],
            'cam2ego': cam2ego.tolist(),
            'sample_data_token': sd['token'],
            'timestamp': sd['timestamp'] / 1e6,
            'lidar2cam': (np.linalg.inv(cam2global) @ lidar2global).tolist(),
            'height': sd['height'],
            'width': sd['width'],
        }
    sd = lidar_sd
    while sd['prev'] and len(info['lidar_sweeps']) < max_sweeps:
        sd = nusc.get('sample_data', sd['prev'])
        s_l2e, s_e2g = _sensor_poses(nusc, sd['token'])
        sweep2lidar = global2lidar @ s_e2g @ s_l2e
        info['lidar_sweeps'].append({
            # mmdet3d's layout (tools/dataset_converters/update_infos_to_v2.py): the sweep's lidar2ego
            # and lidar2sensor, the keyframe's LiDAR frame -> the sweep's (the inverse of sweep2lidar)
            'lidar_points': {'lidar_path': sd['filename'], 'lidar2ego': s_l2e.tolist(),
                             'lidar2sensor': np.linalg.inv(sweep2lidar).tolist()},
            'ego2global': s_e2g.tolist(),
            'timestamp': sd['timestamp'] / 1e6,
            'sample_data_token': sd['token'],
        })
    _, boxes, _ = nusc.get_sample_data(lidar_token)
    rot_g2l = global2lidar[:3, :3]
    for box, ann_token in zip(boxes, sample['anns']):
        ann = nusc.get('sample_annotation', ann_token)
        name = CATEGORY_TO_CLASS.get(ann['category_name'])
        # mmdet3d's and BEVFusion's converters: the global (vx, vy) with vz dropped, rotated into the LiDAR
        # frame; an unknown velocity (an annotation without neighbours) is NaN there and zero after loading.
        vx, vy = np.nan_to_num(nusc.box_velocity(ann_token)[:2], nan=0.0)
        velo = np.array([vx, vy, 0.0]) @ rot_g2l.T
        w, l, h = box.wlh
        info['instances'].append({
            'bbox_3d': [*map(float, box.center), float(l), float(w), float(h), float(box.orientation.yaw_pitch_roll[0])],
            'bbox_label_3d': CLASSES.index(name) if name else -1,
            'bbox_label': CLASSES.index(name) if name else -1,
            'bbox_3d_isvalid': bool(ann['num_lidar_pts'] + ann['num_radar_pts'] > 0),
            'num_lidar_pts': int(ann['num_lidar_pts']),
            'num_radar_pts': int(ann['num_radar_pts']),
            'velocity': [float(velo[0]), float(velo[1])],
            'ann_token': ann_token,
        })
    return info


def create_nuscenes_infos(root: str, version: str, out_prefix: str, max_sweeps: int = 10) -> dict[str, str]:
    """Write ``{out_prefix}_infos_{train,val}.pkl`` for a nuScenes-format dataset.

    Args:
        root: dataset root (contains ``samples/`` and ``{version}/``).
        version: ``v1.0-mini``, ``v1.0-trainval`` or ``v1.0-test``.
        out_prefix: path prefix of the output files.
        max_sweeps: previous LiDAR sweeps recorded per keyframe.

    Returns:
        Split name -> written file.
    """
    nusc = NuScenes(version=version, dataroot=root, verbose=False)
    splits = create_splits_scenes()
    split_names = {'v1.0-mini': ('mini_train', 'mini_val'), 'v1.0-trainval': ('train', 'val'),
                   'v1.0-test': ('test', None)}[version]
    scene_names = {s['name']: s['token'] for s in nusc.scene}
    written, absent = {}, []
    for split, key in zip(('train', 'val'), split_names):
        if key is None:
            continue
        wanted = {scene_names[n] for n in splits[key] if n in scene_names}
        missing = [n for n in splits[key] if n not in scene_names]
        if not wanted:  # a partial download (only the val or only the train blobs): write the split it has
            absent.append(key)
            warnings.warn(f'{root}/{version}: none of the {len(splits[key])} scenes of the {key} split is in '
                          f'scene.json (first: {splits[key][:3]}): no {split} info file written')
            continue
        if missing:
            warnings.warn(f'{root}/{version}: {len(missing)} of the {len(splits[key])} scenes of the {key} split are '
                          f'not in scene.json and are left out of {split} (first: {missing[:3]})')
        samples = [s for s in nusc.sample if s['scene_token'] in wanted]
        samples.sort(key=lambda s: (s['scene_token'], s['timestamp']))
        data_list = []
        for i, s in enumerate(tqdm(samples, desc=f'{split} infos')):
            info = sample_info(nusc, s, max_sweeps)
            info['sample_idx'] = i
            data_list.append(info)
        metainfo = {'categories': {c: i for i, c in enumerate(CLASSES)}, 'dataset': 'nuscenes', 'version': version,
                    'info_version': INFO_VERSION}
        path = f'{out_prefix}_infos_{split}.pkl'
        with open(path, 'wb') as f:
            pickle.dump({'metainfo': metainfo, 'data_list': data_list}, f)
        written[split] = path
    if not written:
        raise ValueError(f'{root}/{version}: none of the scenes of the {" and ".join(absent)} split(s) is in '
                         'scene.json; is --version right?')
    return written
