import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmdet3d.structures import LiDARInstance3DBoxes

from fuller.evaluation import NuScenesDetMetric, default_attributes, global_to_lidar, lidar_to_global
from fuller.testing import gt_submission

VAL_SCENES = ('scene-0103', 'scene-0916')


def _val_infos(root):
    with open(osp.join(root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        return pickle.load(f)['data_list']


def _gt_as_prediction(info) -> dict:
    """A val info's valid ground truth packed as the detector's output for that sample."""
    inst = [i for i in info['instances'] if i['bbox_label_3d'] >= 0 and i['bbox_3d_isvalid']]
    arr = np.array([[*i['bbox_3d'], *i['velocity']] for i in inst], dtype=np.float32).reshape(-1, 9)
    boxes = LiDARInstance3DBoxes(arr, box_dim=9, origin=(0.5, 0.5, 0.5))
    return {
        'token': info['token'], 'ego2global': info['ego2global'], 'lidar2ego': info['lidar_points']['lidar2ego'],
        'lidar_aug_matrix': np.eye(4),
        'pred_instances_3d': {'bboxes_3d': boxes, 'scores_3d': torch.ones(len(inst)),
                              'labels_3d': torch.tensor([i['bbox_label_3d'] for i in inst], dtype=torch.long)},
    }


def test_gt_through_prediction_path_matches_devkit_direct(demo_root, tmp_path):
    # The demo world labels still vehicles 'vehicle.stopped'.
    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path / 'pred'),
                               still_attributes={c: 'vehicle.stopped' for c in
                                                 ('car', 'truck', 'trailer', 'bus', 'construction_vehicle')})
    metric.process({}, [_gt_as_prediction(i) for i in _val_infos(demo_root)])
    ours = metric.compute_metrics(metric.results)
    assert osp.isfile(tmp_path / 'pred' / 'results_nusc.json')

    direct_dir = tmp_path / 'direct'
    direct_dir.mkdir()
    (direct_dir / 'results.json').write_text(json.dumps(gt_submission(metric.nusc, VAL_SCENES)))
    direct = metric.evaluate_submission(str(direct_dir / 'results.json'), str(direct_dir))
    assert ours['mAP'] == pytest.approx(direct['mean_ap'], abs=1e-6)
    assert ours['NDS'] == pytest.approx(direct['nd_score'], abs=1e-6)
    assert ours['mAP'] > 0.8  # classes absent from the val split count as AP 0 in the mean
    for c in ('car', 'pedestrian', 'barrier'):
        assert ours[f'AP_{c}'] > 0.99
    # Perfect boxes: TP errors are 0 for every class present; the devkit counts an absent class as 1.
    absent = [c for c in metric.classes if ours[f'AP_{c}'] == 0]
    assert ours['mATE'] == pytest.approx(len(absent) / 10, abs=1e-3)
    assert ours['mASE'] == pytest.approx(len(absent) / 10, abs=1e-3)
    assert ours['mAOE'] == pytest.approx(len(absent) / 9, abs=1e-3)  # cones have no orientation error


def test_missing_samples_give_a_clear_error(demo_root, tmp_path):
    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path))
    metric.process({}, [_gt_as_prediction(_val_infos(demo_root)[0])])
    with pytest.raises(RuntimeError, match='mini_val'):
        metric.compute_metrics(metric.results)


def test_info_boxes_round_trip_to_sample_annotations(demo_root):
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes('v1.0-mini', demo_root, verbose=False)
    info = _val_infos(demo_root)[0]
    inst = info['instances']
    arr = np.array([[*i['bbox_3d'], *i['velocity']] for i in inst])
    boxes = LiDARInstance3DBoxes(arr, box_dim=9, origin=(0.5, 0.5, 0.5)).tensor.double().numpy()
    l2g = np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego'])
    g = lidar_to_global(boxes, l2g)
    for k, i in enumerate(inst):
        ann = nusc.get('sample_annotation', i['ann_token'])
        np.testing.assert_allclose(g['translation'][k], ann['translation'], atol=1e-4)
        np.testing.assert_allclose(g['size'][k], ann['size'], atol=1e-5)
        q = np.asarray(ann['rotation'])
        assert abs(abs(np.dot(g['rotation'][k], q)) - 1) < 1e-6
        np.testing.assert_allclose(g['velocity'][k], np.nan_to_num(nusc.box_velocity(i['ann_token'])[:2]), atol=1e-4)
    back = global_to_lidar(g['translation'], g['size'], g['rotation'], g['velocity'], l2g)
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-6)
    dyaw = np.angle(np.exp(1j * (back[:, 6] - boxes[:, 6])))
    np.testing.assert_allclose(dyaw, 0, atol=1e-9)
    np.testing.assert_allclose(back[:, 7:], boxes[:, 7:], atol=1e-6)


def test_augmentation_is_undone():
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(-40, 40, (20, 2)), rng.uniform(-2, 0, 20), rng.uniform(0.5, 5, (20, 3)),
                  rng.uniform(-np.pi, np.pi, 20), rng.uniform(-5, 5, (20, 2))]
    l2g = np.eye(4)
    l2g[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    l2g[:3, 3] = [100, 200, 1.5]
    ref = lidar_to_global(boxes, l2g)
    # Augment the boxes with the training transform (rotate, scale, translate, both flips) and undo it.
    from fuller.datasets.transforms import BEVAugmentation

    aug = BEVAugmentation(rot_range=(0.3, 0.3), scale_range=(1.04, 1.04), trans_std=(0.5, 0.5, 0.2),
                          flip_ratio_x=1.0, flip_ratio_y=1.0)
    out = aug.transform({'gt_bboxes_3d': LiDARInstance3DBoxes(torch.from_numpy(boxes), box_dim=9)})
    aug_boxes, m = out['gt_bboxes_3d'], out['lidar_aug_matrix']
    got = lidar_to_global(aug_boxes.tensor.double().numpy(), l2g, aug=m)
    for k in ('translation', 'size', 'velocity'):
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4)
    np.testing.assert_allclose(np.abs((got['rotation'] * ref['rotation']).sum(1)), 1, atol=1e-6)


def test_default_attributes():
    names = ['car', 'car', 'bicycle', 'pedestrian', 'pedestrian', 'barrier']
    v = np.array([[1.0, 0], [0.1, 0], [0, 0], [0.5, 0.5], [0, 0], [0, 0]])
    assert default_attributes(names, v) == ['vehicle.moving', 'vehicle.parked', 'cycle.without_rider',
                                            'pedestrian.moving', 'pedestrian.standing', '']
    assert default_attributes(['car'], np.zeros((1, 2)), {'car': 'vehicle.stopped'}) == ['vehicle.stopped']


def test_default_attributes_follow_mmdet3d_for_every_class_and_speed():
    """mmdet3d's NuScenesMetric rule (its DefaultAttribute table and speed test), per class,
    still and moving: a still bus is 'vehicle.stopped'."""
    from mmdet3d.evaluation.metrics.nuscenes_metric import NuScenesMetric

    def mmdet3d_attr(name: str, speed: float) -> str:
        if speed > 0.2:
            if name in ('car', 'construction_vehicle', 'bus', 'truck', 'trailer'):
                return 'vehicle.moving'
            if name in ('bicycle', 'motorcycle'):
                return 'cycle.with_rider'
            return NuScenesMetric.DefaultAttribute[name]
        if name == 'pedestrian':
            return 'pedestrian.standing'
        if name == 'bus':
            return 'vehicle.stopped'
        return NuScenesMetric.DefaultAttribute[name]

    names = list(NuScenesMetric.DefaultAttribute)
    for speed in (0.0, 0.19, 0.21, 5.0):
        v = np.tile([[speed, 0.0]], (len(names), 1))
        assert default_attributes(names, v) == [mmdet3d_attr(n, speed) for n in names], speed
    assert default_attributes(['bus'], np.zeros((1, 2))) == ['vehicle.stopped']
