"""The loading path on one real nuScenes keyframe (../shared; never copied into the repo)."""

import pickle
import warnings

import cv2
import numpy as np
import pytest
from mmengine.registry import init_default_scope

from fuller.registry import DATASETS

from .test_demo_data import check_points_project_into_boxes


def test_real_keyframe_loads_and_boxes_project(real_keyframe):
    init_default_scope('fuller')
    pipeline = [dict(type='LoadMultiSweepPoints', sweeps=0), dict(type='LoadMultiViewImages'),
                dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True)]
    ds = DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=real_keyframe + '/',
                             ann_file='mmdet3d_info.pkl', pipeline=pipeline, filter_empty_gt=False,
                             metainfo=dict(classes=['car', 'truck', 'trailer', 'bus', 'construction_vehicle',
                                                    'bicycle', 'motorcycle', 'pedestrian', 'traffic_cone',
                                                    'barrier'])))
    out = ds.get_data_info(0)
    assert len(out['instances']) == 69
    res = ds[0]
    assert res['points'].shape == (34688, 5)
    assert len(res['imgs']) == 6 and res['imgs'][0].shape == (900, 1600, 3)
    assert res['cam2img'].shape == (6, 4, 4)
    with open(f'{real_keyframe}/mmdet3d_info.pkl', 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    checked = check_points_project_into_boxes(info, res['points'].tensor.numpy(), min_checked=10)
    assert checked >= 10
    assert np.isfinite(res['gt_bboxes_3d'].tensor.numpy()).all()


def test_camera_images_are_bevfusions_pixels(real_keyframe):
    """The six images as BEVFusion loads them (LoadMultiViewImageFromFiles: PIL's Image.open, RGB)
    and, through the nuScenes test pipeline's ImageAug3D, as its img_transform makes them (resize
    0.48 to 768 x 432, bottom crop 256 x 704 centred): equal to the last bit."""
    from PIL import Image

    from fuller.datasets.transforms import ImageAug3D, LoadMultiViewImages

    from .test_augmentation import bevfusion_img_transform

    with open(f'{real_keyframe}/mmdet3d_info.pkl', 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    cams = list(info['images'])
    paths = [f'{real_keyframe}/samples/{c}/{info["images"][c]["img_path"]}' for c in cams]
    results = LoadMultiViewImages(cameras=cams).transform(
        {'images': {c: {**info['images'][c], 'img_path': p} for c, p in zip(cams, paths)}})
    aug = ImageAug3D(final_dim=(256, 704), resize_lim=(0.48, 0.48), is_train=False, backend='pillow')
    out = aug.transform({'imgs': list(results['imgs']), 'img_aug_matrix': np.eye(4, dtype=np.float32)[None].repeat(6, 0)})
    for path, loaded, augmented in zip(paths, results['imgs'], out['imgs']):
        pil = np.asarray(Image.open(path).convert('RGB'))
        np.testing.assert_array_equal(loaded, pil.astype(np.float32))
        np.testing.assert_array_equal(augmented, bevfusion_img_transform(pil, (768, 432), (32, 176, 736, 432), False, 0.0))


def _infos_of_keyframe(root, out_prefix):
    """Our converter on the keyframe's real devkit tables (scene-0061 is in ``mini_train``)."""
    from fuller.datasets.create_infos import create_nuscenes_infos

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # no mini_val scene here
        written = create_nuscenes_infos(root, 'v1.0-mini', out_prefix, max_sweeps=10)
    with open(written['train'], 'rb') as f:
        return pickle.load(f)


def test_create_data_reproduces_mmdet3d_info_of_a_real_keyframe(real_keyframe, tmp_path):
    """``tools/create_data.py``'s converter, run on the real keyframe's nuScenes tables through the
    devkit, writes what mmdet3d's converter wrote for it (``mmdet3d_info.pkl``, info_version 1.1):
    the same poses and calibration (to float32 rounding), file names, tokens, and boxes in the
    LiDAR frame with mmdet3d's conventions (gravity centre, (l, w, h), yaw from the devkit's
    ``yaw_pitch_roll[0]``), labels, point counts and validity. The table's annotations were rebuilt
    from the info's 68 labelled boxes (SOURCES.md), so the boxes check the frames and conventions
    of the round trip; the info's unlabelled 69th box has no annotation."""
    ours = _infos_of_keyframe(real_keyframe, str(tmp_path / 'kf'))
    with open(f'{real_keyframe}/mmdet3d_info.pkl', 'rb') as f:
        ref = pickle.load(f)
    assert ours['metainfo'] == ref['metainfo']
    (o,), r = ours['data_list'], ref['data_list'][0]
    assert (o['token'], o['timestamp'], o['lidar_points']['lidar_path']) == \
        (r['token'], r['timestamp'], r['lidar_points']['lidar_path'])
    np.testing.assert_allclose(o['ego2global'], r['ego2global'], atol=1e-4)  # 1180 m in float32
    np.testing.assert_allclose(o['lidar_points']['lidar2ego'], r['lidar_points']['lidar2ego'], atol=1e-6)
    assert set(o['images']) == set(r['images'])
    for cam, ri in r['images'].items():
        oi = o['images'][cam]
        assert (oi['img_path'], oi['sample_data_token'], oi['timestamp']) == \
            (ri['img_path'], ri['sample_data_token'], ri['timestamp']), cam
        for key in ('cam2img', 'cam2ego', 'lidar2cam'):
            np.testing.assert_allclose(oi[key], ri[key], atol=1e-6, err_msg=f'{cam} {key}')
    labelled = [i for i in r['instances'] if i['bbox_label_3d'] >= 0]
    assert len(o['instances']) == len(labelled) == 68
    np.testing.assert_allclose([i['bbox_3d'] for i in o['instances']], [i['bbox_3d'] for i in labelled],
                               atol=1e-4)
    for key, cast in (('bbox_label_3d', int), ('bbox_label', int), ('num_lidar_pts', int),
                      ('bbox_3d_isvalid', bool)):
        assert [cast(i[key]) for i in o['instances']] == [cast(i[key]) for i in labelled], key


def test_create_data_velocity_is_mmdet3d_s_horizontal_velocity_in_the_lidar_frame(real_keyframe, tmp_path,
                                                                                  monkeypatch):
    """mmdet3d's (and BEVFusion's) converter takes the annotation's global (vx, vy), sets vz to 0 and
    rotates it into the LiDAR frame (``velo @ inv(e2g_r).T @ inv(l2e_r).T``); a vertical velocity
    must not leak into (vx, vy) through the ego's pitch and roll (about 1 degree on this keyframe).
    The keyframe's annotations have no neighbours (the devkit's velocity is NaN: 0 after loading in
    mmdet3d, 0 in our info), so the devkit's ``box_velocity`` is given a known 3-D velocity here."""
    from nuscenes.nuscenes import NuScenes

    velocity = np.array([3.0, -4.0, 5.0])
    monkeypatch.setattr(NuScenes, 'box_velocity', lambda self, token, max_time_diff=1.5: velocity)
    o = _infos_of_keyframe(real_keyframe, str(tmp_path / 'kf'))['data_list'][0]
    e2g_r = np.array(o['ego2global'])[:3, :3]
    l2e_r = np.array(o['lidar_points']['lidar2ego'])[:3, :3]
    expected = (np.array([velocity[0], velocity[1], 0.0]) @ np.linalg.inv(e2g_r).T @ np.linalg.inv(l2e_r).T)[:2]
    with_vz = (velocity @ np.linalg.inv(e2g_r).T @ np.linalg.inv(l2e_r).T)[:2]
    assert np.abs(with_vz - expected).max() > 0.05  # the test can tell the two apart
    for inst in o['instances']:
        np.testing.assert_allclose(inst['velocity'], expected, atol=1e-9)


def test_mmdet3d_info_boxes_score_perfectly_under_the_devkit_on_a_real_pose(real_keyframe, tmp_path):
    """The whole detection-scoring chain on a real pose (the ego pitched and rolled about 1 degree,
    unlike the flat demo world): mmdet3d's info loaded by our dataset, its labelled boxes packed as
    the detector's output, mapped to global by ``NuScenesDetMetric`` and scored by the official
    devkit against the keyframe's annotations. Every class with ground truth inside the devkit's
    class range scores AP 1 with zero translation, scale and orientation error; the bus (54 m),
    construction vehicle (71 m) and bicycle (64 m) lie beyond their ranges (50, 50, 40 m) and
    count as absent. Velocity and attributes are not checked (the rebuilt annotations have neither)."""
    import torch

    from fuller.datasets.metainfo import CLASSES
    from fuller.evaluation import NuScenesDetMetric

    init_default_scope('fuller')
    ds = DATASETS.build(dict(type='NuScenesMultiTaskDataset', data_root=real_keyframe + '/',
                             ann_file='mmdet3d_info.pkl', filter_empty_gt=False, metainfo=dict(classes=list(CLASSES)),
                             pipeline=[dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True)]))
    res, info = ds[0], ds.get_data_info(0)
    labels = torch.as_tensor(res['gt_labels_3d'])
    keep = labels >= 0
    pred = {'token': info['token'], 'ego2global': info['ego2global'], 'lidar2ego': info['lidar_points']['lidar2ego'],
            'lidar_aug_matrix': np.eye(4),
            'pred_instances_3d': {'bboxes_3d': res['gt_bboxes_3d'][keep], 'scores_3d': torch.ones(int(keep.sum())),
                                  'labels_3d': labels[keep]}}
    metric = NuScenesDetMetric(real_keyframe, version='v1.0-mini', eval_set='mini_train', classes=CLASSES,
                               jsonfile_prefix=str(tmp_path / 'pred'))
    metric.process({}, [pred])
    out = metric.compute_metrics(metric.results)
    for c in ('car', 'truck', 'pedestrian', 'traffic_cone', 'barrier'):
        assert out[f'AP_{c}'] > 0.999, c
    for c in ('trailer', 'bus', 'construction_vehicle', 'bicycle', 'motorcycle'):
        assert out[f'AP_{c}'] == 0, c
    # absent classes count 1 in each TP error; present ones 0 (cones have no orientation error)
    assert out['mATE'] == pytest.approx(0.5, abs=1e-3)
    assert out['mASE'] == pytest.approx(0.5, abs=1e-3)
    assert out['mAOE'] == pytest.approx(5 / 9, abs=1e-3)


def test_drivable_area_is_bevfusion_s_on_the_real_map(real_keyframe, tmp_path):
    """The map ground truth of BEVFusion's protocol on real map geometry (singapore-onenorth's
    ``drivable_area`` layer around the keyframe). BEVFusion's ``LoadBEVSegmentation``
    (mit-han-lab/bevfusion ``mmdet3d/datasets/pipelines/loading.py``) takes the class
    ``drivable_area`` from the map's ``drivable_area`` layer (``road_segment`` + ``lane`` is its
    ``drivable_area*``), rasterizes it with the devkit's ``get_map_mask`` on a patch centred on
    the LiDAR and turned by its yaw, and transposes it to ``[X, Y]``; FULLER keeps ``[Y, X]``.
    The devkit fills every pixel a polygon touches, with pixel centres at multiples of the cell
    size; FULLER fills the cells whose centre lies inside. So, on a grid shifted by half a cell
    to put FULLER's cell centres on BEVFusion's, FULLER's mask lies inside BEVFusion's and holds
    its interior; on the standard grid the two agree at IoU > 0.93 (they differ by the boundary
    cells). A flipped or transposed raster would not pass (IoU 0.10-0.71)."""
    from nuscenes.map_expansion.map_api import NuScenesMap

    from fuller.datasets.transforms import LoadBEVMapMask

    info = _infos_of_keyframe(real_keyframe, str(tmp_path / 'kf'))['data_list'][0]
    assert info['location'] == 'singapore-onenorth'
    lidar2global = np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego'])
    heading = lidar2global[:3, :3] @ np.array([1.0, 0.0, 0.0])
    masks = NuScenesMap(real_keyframe, info['location']).get_map_mask(
        (lidar2global[0, 3], lidar2global[1, 3], 100.0, 100.0), np.degrees(np.arctan2(heading[1], heading[0])),
        ['drivable_area'], canvas_size=(200, 200))
    bevfusion = masks.transpose(0, 2, 1)[0].astype(bool)  # [X, Y], as BEVFusion's gt_masks_bev
    assert 0.1 < bevfusion.mean() < 0.3

    def ours(lo, hi):
        t = LoadBEVMapMask(real_keyframe, xbound=(lo, hi, 0.5), ybound=(lo, hi, 0.5), classes=('drivable_area',))
        assert t.layers == {'drivable_area': ('drivable_area',)}
        return t.transform(dict(info))['gt_map'][0].T.astype(bool)  # [Y, X] -> [X, Y]

    aligned = ours(-50.25, 49.75)
    assert not (aligned & ~bevfusion).any()
    interior = cv2.erode(bevfusion.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (interior & ~aligned).sum() <= 0.001 * interior.size
    standard = ours(-50.0, 50.0)
    assert (standard & bevfusion).sum() / (standard | bevfusion).sum() > 0.93


def test_map_class_layers_are_bevfusion_s_rule():
    """BEVFusion's ``LoadBEVSegmentation`` (mit-han-lab/bevfusion
    ``mmdet3d/datasets/pipelines/loading.py``): ``drivable_area*`` -> road_segment + lane,
    ``divider`` -> road_divider + lane_divider, any other class -> the layer of its name. The
    dataset's metainfo states it for the six classes; a config overrides a class with
    ``metainfo.map_layers`` (the demo's road surface); a layer the map lacks is refused naming
    the class."""
    from fuller.datasets.metainfo import MAP_LAYERS, map_class_layers
    from fuller.datasets.transforms.map_raster import class_layers

    assert MAP_LAYERS == {'drivable_area': ('drivable_area',), 'ped_crossing': ('ped_crossing',),
                          'walkway': ('walkway',), 'stop_line': ('stop_line',), 'carpark_area': ('carpark_area',),
                          'divider': ('road_divider', 'lane_divider')}
    assert map_class_layers('drivable_area*') == ('road_segment', 'lane')
    assert class_layers(['drivable_area', 'divider'], {'drivable_area': ('road_segment', 'lane')}) == \
        {'drivable_area': ('road_segment', 'lane'), 'divider': ('road_divider', 'lane_divider')}
    with pytest.raises(KeyError, match="map class 'walkway': unknown map-expansion layers \\['sidewalk'\\]"):
        class_layers(['walkway'], {'walkway': ('sidewalk',)})
