import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmdet3d.structures import LiDARInstance3DBoxes

from fuller.datasets.metainfo import CLASSES
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
    # The demo world follows the devkit's attribute convention (still bus: 'vehicle.stopped',
    # other still vehicles: 'vehicle.parked'), so ground truth scores perfectly on attributes too.
    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path / 'pred'),
                               classes=CLASSES)
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


def test_a_model_that_detects_nothing_scores_zero(demo_root, tmp_path):
    """No box in any sample (a fused model with its LiDAR dropped can do that): the devkit's
    loader cannot take such a submission, so it is scored through a placeholder box beyond every
    class range; the result is the devkit's for no predictions (AP 0, TP errors 1, NDS 0), and
    results_nusc.json stays as the model's (no boxes)."""
    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path / 'pred'),
                               classes=CLASSES)
    empty = []
    for info in _val_infos(demo_root):
        sample = _gt_as_prediction(info)
        sample['pred_instances_3d'] = {'bboxes_3d': LiDARInstance3DBoxes(np.zeros((0, 9), np.float32), box_dim=9),
                                       'scores_3d': torch.zeros(0), 'labels_3d': torch.zeros(0, dtype=torch.long)}
        empty.append(sample)
    metric.process({}, empty)
    out = metric.compute_metrics(metric.results)
    assert out['mAP'] == 0 and out['NDS'] == 0 and all(out[f'AP_{c}'] == 0 for c in CLASSES)
    assert out['mATE'] == out['mASE'] == out['mAOE'] == out['mAVE'] == out['mAAE'] == 1
    with open(tmp_path / 'pred' / 'results_nusc.json') as f:
        assert not any(json.load(f)['results'].values())
    assert not (tmp_path / 'pred' / 'results_nusc_placeholder.json').exists()


def test_a_class_subset_is_scored_over_its_own_classes(demo_root, tmp_path):
    """A ``metainfo = dict(classes=['car', 'pedestrian'])`` fork: perfect car and pedestrian
    predictions score mAP and NDS 1.0 (the devkit over those two classes), not the ten-class
    averages (0.155 / 0.19 when the absent classes counted)."""
    subset = ('car', 'pedestrian')
    preds = []
    for info in _val_infos(demo_root):
        p = _gt_as_prediction(info)
        inst = p['pred_instances_3d']
        keep = torch.tensor([CLASSES[i] in subset for i in inst['labels_3d'].tolist()], dtype=torch.bool)
        p['pred_instances_3d'] = {'bboxes_3d': inst['bboxes_3d'][keep], 'scores_3d': inst['scores_3d'][keep],
                                  'labels_3d': torch.tensor([subset.index(CLASSES[i]) for i in
                                                             inst['labels_3d'][keep].tolist()], dtype=torch.long)}
        preds.append(p)
    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path), classes=subset)
    metric.process({}, preds)
    out = metric.compute_metrics(metric.results)
    assert out['AP_car'] > 0.99 and out['AP_pedestrian'] > 0.99
    assert out['mAP'] == pytest.approx((out['AP_car'] + out['AP_pedestrian']) / 2, abs=1e-9)
    assert out['mAP'] > 0.99 and out['NDS'] > 0.99
    assert out['mATE'] < 1e-3 and out['mAAE'] < 1e-3
    summary = json.loads((tmp_path / 'metrics_summary.json').read_text())
    assert summary['classes_scored'] == ['car', 'pedestrian'] and set(summary['label_aps']) == set(subset)
    # The same submission scored over the ten classes: the devkit's ten-class numbers.
    ten = metric.evaluate_submission(str(tmp_path / 'results_nusc.json'), str(tmp_path))
    assert ten['mean_ap'] < 0.5 and len(ten['classes_scored']) == 10


def _mmdet3d_attribute(name: str, speed: float) -> str:
    """mmdet3d's NuScenesMetric attribute rule (its DefaultAttribute table and speed test)."""
    from mmdet3d.evaluation.metrics.nuscenes_metric import NuScenesMetric

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


def test_perturbed_predictions_score_as_the_devkit_scores_them(demo_root, tmp_path):
    """Predictions made from the ground truth with distinct scores, perturbed boxes (position,
    size, heading, velocity), still boxes (every third box's velocity zeroed: still buses among
    them), missed boxes and false positives: the project's metric path (LiDAR-frame boxes,
    attributes by speed) gives the same mAP, NDS and TP errors as the devkit scoring the same
    boxes directly with mmdet3d's attribute rule."""
    from pyquaternion import Quaternion

    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path / 'pred'),
                               classes=CLASSES)
    direct = gt_submission(metric.nusc, VAL_SCENES)
    rng = np.random.default_rng(0)
    infos = {i['token']: i for i in _val_infos(demo_root)}
    samples, still_buses = [], 0
    for token, recs in direct['results'].items():
        out = []
        for k, r in enumerate(recs):
            if rng.random() < 0.1:
                continue  # missed
            t = np.asarray(r['translation']) + np.r_[rng.normal(0, 0.4, 2), rng.normal(0, 0.1)]
            size = np.asarray(r['size']) * rng.uniform(0.85, 1.15, 3)
            q = Quaternion(r['rotation']) * Quaternion(axis=[0, 0, 1], angle=float(rng.normal(0, 0.3)))
            v = np.asarray(r['velocity']) + rng.normal(0, 0.5, 2)
            if k % 3 == 0:
                v = np.zeros(2)
            out.append(dict(r, translation=t.tolist(), size=size.tolist(), rotation=list(q.elements),
                            velocity=v.tolist()))
            if rng.random() < 0.15:  # a false positive nearby
                out.append(dict(out[-1], translation=(t + np.r_[rng.uniform(3, 6, 2), 0]).tolist()))
        for r in out:
            r['detection_score'] = float(rng.uniform(0.05, 1.0))  # distinct scores
            r['attribute_name'] = _mmdet3d_attribute(r['detection_name'], float(np.linalg.norm(r['velocity'])))
            still_buses += r['detection_name'] == 'bus' and r['attribute_name'] == 'vehicle.stopped'
        direct['results'][token] = out
        info = infos[token]
        l2g = np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego'])
        if out:
            arr = global_to_lidar(np.array([r['translation'] for r in out]), np.array([r['size'] for r in out]),
                                  np.array([r['rotation'] for r in out]), np.array([r['velocity'] for r in out]), l2g)
        else:
            arr = np.zeros((0, 9))
        samples.append({
            'token': token, 'ego2global': info['ego2global'], 'lidar2ego': info['lidar_points']['lidar2ego'],
            'lidar_aug_matrix': np.eye(4),
            'pred_instances_3d': {
                'bboxes_3d': LiDARInstance3DBoxes(torch.from_numpy(arr), box_dim=9),
                'scores_3d': torch.tensor([r['detection_score'] for r in out], dtype=torch.float64),
                'labels_3d': torch.tensor([CLASSES.index(r['detection_name']) for r in out], dtype=torch.long)},
        })
    assert still_buses > 0
    metric.process({}, samples)
    ours = metric.compute_metrics(metric.results)
    (tmp_path / 'direct').mkdir()
    (tmp_path / 'direct' / 'results.json').write_text(json.dumps(direct))
    ref = metric.evaluate_submission(str(tmp_path / 'direct' / 'results.json'), str(tmp_path / 'direct'))
    assert 0.2 < ours['mAP'] < 0.95 and ours['mAAE'] > 0  # a non-trivial submission
    assert round(ours['mAP'], 4) == round(ref['mean_ap'], 4)
    assert round(ours['NDS'], 4) == round(ref['nd_score'], 4)
    names = {'trans_err': 'mATE', 'scale_err': 'mASE', 'orient_err': 'mAOE', 'vel_err': 'mAVE', 'attr_err': 'mAAE'}
    for k, v in ref['tp_errors'].items():
        assert round(ours[names[k]], 4) == round(v, 4), k


def test_missing_samples_give_a_clear_error(demo_root, tmp_path):
    metric = NuScenesDetMetric(demo_root, version='v1.0-mini', jsonfile_prefix=str(tmp_path))
    # Without classes the metric needs the dataset's (the evaluation loop sets dataset_meta).
    with pytest.raises(KeyError, match='no classes given and no dataset_meta'):
        metric.process({}, [_gt_as_prediction(_val_infos(demo_root)[0])])
    metric.dataset_meta = dict(classes=CLASSES)
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
    """mmdet3d's NuScenesMetric rule, per class, still and moving: a still bus is 'vehicle.stopped'."""
    from mmdet3d.evaluation.metrics.nuscenes_metric import NuScenesMetric

    names = list(NuScenesMetric.DefaultAttribute)
    for speed in (0.0, 0.19, 0.21, 5.0):
        v = np.tile([[speed, 0.0]], (len(names), 1))
        assert default_attributes(names, v) == [_mmdet3d_attribute(n, speed) for n in names], speed
    assert default_attributes(['bus'], np.zeros((1, 2))) == ['vehicle.stopped']
