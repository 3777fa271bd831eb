import numpy as np
import pytest
import torch

from fuller.evaluation import BEVMapIoUMetric

CLASSES = ('drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider')


def _numpy_reference(probs: list, gts: list, thresholds) -> np.ndarray:
    """Best-threshold IoU per class over the dataset, computed directly."""
    p = np.stack(probs)  # [N, K, H, W]
    g = np.stack(gts).astype(bool)
    best = np.zeros(p.shape[1])
    for k in range(p.shape[1]):
        ious = []
        for t in thresholds:
            pred = p[:, k] >= t
            ious.append((pred & g[:, k]).sum() / max((pred | g[:, k]).sum(), 1))
        best[k] = max(ious)
    return best


def test_map_iou_matches_numpy_on_random_masks():
    rng = np.random.default_rng(0)
    gts = [(rng.random((6, 20, 24)) < 0.3).astype(np.uint8) for _ in range(5)]
    probs = [np.clip(g * 0.5 + rng.random(g.shape) * 0.6, 0, 1).astype(np.float32) for g in gts]
    metric = BEVMapIoUMetric(classes=CLASSES)
    for p, g in zip(probs, gts):  # incremental: one sample at a time
        metric.process({}, [{'pred_map': torch.from_numpy(p), 'gt_map': torch.from_numpy(g)}])
    out = metric.compute_metrics(metric.results)
    ref = _numpy_reference(probs, gts, metric.thresholds)
    np.testing.assert_allclose([out[f'IoU_{c}'] for c in CLASSES], ref, rtol=1e-12)
    assert out['mIoU'] == pytest.approx(ref.mean())
    # Distributed evaluation: each rank's per-sample counts concatenate to the same result.
    rank0, rank1 = metric.results[:2], metric.results[2:]
    assert metric.compute_metrics(rank0 + rank1) == out


def test_ground_truth_as_prediction_scores_one():
    rng = np.random.default_rng(1)
    metric = BEVMapIoUMetric(classes=CLASSES)
    for _ in range(3):
        g = torch.from_numpy((rng.random((6, 16, 16)) < 0.4).astype(np.uint8))
        metric.process({}, [{'pred_map': g.float(), 'gt_map': g}])
    out = metric.compute_metrics(metric.results)
    assert out['mIoU'] == 1.0


def test_missing_ground_truth_is_a_clear_error():
    metric = BEVMapIoUMetric(classes=CLASSES)
    with pytest.raises(KeyError, match='LoadBEVMapMask'):
        metric.process({}, [{'pred_map': torch.zeros(6, 4, 4)}])
    assert metric.compute_metrics([]) == {}


def test_iou_by_distance_band_matches_numpy_on_masked_cells():
    """``distance_bands=(6, 12)`` on a 20 x 24 grid of 1 m cells around the ego (x in [-12, 12),
    y in [-10, 10)): each band's IoU is the reference IoU over the cells whose centre lies at that
    distance (computed here from the grid by hand), and the overall IoUs do not change."""
    rng = np.random.default_rng(1)
    gts = [(rng.random((6, 20, 24)) < 0.3).astype(np.uint8) for _ in range(3)]
    probs = [np.clip(g * 0.5 + rng.random(g.shape) * 0.6, 0, 1).astype(np.float32) for g in gts]
    bound = dict(xbound=(-12.0, 12.0, 1.0), ybound=(-10.0, 10.0, 1.0))
    metric = BEVMapIoUMetric(classes=CLASSES, distance_bands=(6, 12), map_bound=bound)
    plain = BEVMapIoUMetric(classes=CLASSES)
    for p, g in zip(probs, gts):
        for m in (metric, plain):
            m.process({}, [{'pred_map': torch.from_numpy(p), 'gt_map': torch.from_numpy(g)}])
    out = metric.compute_metrics(metric.results)
    base = plain.compute_metrics(plain.results)
    assert {k: out[k] for k in base} == base
    x, y = np.arange(24) - 11.5, np.arange(20) - 9.5
    dist = np.hypot(y[:, None], x[None, :])
    for name, (lo, hi) in {'0-6m': (0, 6), '6-12m': (6, 12), '12m+': (12, np.inf)}.items():
        cells = (dist >= lo) & (dist < hi)
        assert cells.any()
        want = _numpy_reference([p[:, cells] for p in probs], [g[:, cells] for g in gts], metric.thresholds)
        got = [out[f'IoU_{c}@{name}'] for c in CLASSES]
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert out[f'mIoU@{name}'] == pytest.approx(want.mean())


def test_distance_bands_need_the_grid_and_increasing_edges():
    with pytest.raises(ValueError, match='map_bound'):
        BEVMapIoUMetric(classes=CLASSES, distance_bands=(15,))
    with pytest.raises(ValueError, match='increasing'):
        BEVMapIoUMetric(classes=CLASSES, distance_bands=(30, 15), map_bound=dict(xbound=(0, 1, 1), ybound=(0, 1, 1)))
    m = BEVMapIoUMetric(classes=CLASSES, distance_bands=(15,), map_bound=dict(xbound=(-5, 5, 1), ybound=(-5, 5, 1)))
    with pytest.raises(ValueError, match='10x10 grid'):
        m.process({}, [{'pred_map': torch.zeros(6, 8, 8), 'gt_map': torch.zeros(6, 8, 8)}])


def test_iou_near_boxes_matches_numpy_on_the_cells_near_each_samples_boxes():
    """``near_boxes=dict(classes=('car', 'bus'), radius=3)`` on a 20 x 24 grid of 1 m cells: each
    sample's "near" cells are those whose centre lies within 3 m of one of its car or bus boxes
    (not of its pedestrians), found here by hand; "away" is the rest; the overall IoUs do not change."""
    rng = np.random.default_rng(2)
    bound = dict(xbound=(-12.0, 12.0, 1.0), ybound=(-10.0, 10.0, 1.0))
    metric = BEVMapIoUMetric(classes=CLASSES, near_boxes=dict(classes=('car', 'bus'), radius=3.0), map_bound=bound)
    metric.dataset_meta = {'classes': ('car', 'truck', 'bus', 'pedestrian')}
    plain = BEVMapIoUMetric(classes=CLASSES)
    x, y = np.arange(24) - 11.5, np.arange(20) - 9.5
    samples = []
    for k in range(3):
        g = (rng.random((6, 20, 24)) < 0.3).astype(np.uint8)
        p = np.clip(g * 0.5 + rng.random(g.shape) * 0.6, 0, 1).astype(np.float32)
        boxes = np.zeros((3, 9))
        boxes[:, :2] = rng.uniform([-12, -10], [12, 10], (3, 2))
        labels = np.array([0, 3, 2]) if k else np.array([3, 3, 3])  # the first sample: no car or bus
        near = np.zeros((20, 24), bool)
        for (bx, by), lab in zip(boxes[:, :2], labels):
            if lab in (0, 2):
                near |= np.hypot(y[:, None] - by, x[None, :] - bx) <= 3.0
        samples.append((p, g, near))
        s = {'pred_map': torch.from_numpy(p), 'gt_map': torch.from_numpy(g),
             'eval_ann_info': {'gt_bboxes_3d': boxes, 'gt_labels_3d': labels}}
        metric.process({}, [s])
        plain.process({}, [s])
    out = metric.compute_metrics(metric.results)
    base = plain.compute_metrics(plain.results)
    assert {k: out[k] for k in base} == base
    assert metric.band_names() == ['near-car+bus-3m', 'away-car+bus-3m']
    for name, region in (('near-car+bus-3m', lambda n: n), ('away-car+bus-3m', lambda n: ~n)):
        # over the dataset: the cells of every sample in the region, concatenated
        want = _numpy_reference([np.concatenate([p[:, region(n)] for p, _, n in samples], 1)],
                                [np.concatenate([g[:, region(n)] for _, g, n in samples], 1)], metric.thresholds)
        np.testing.assert_allclose([out[f'IoU_{c}@{name}'] for c in CLASSES], want, rtol=1e-6)
        assert out[f'mIoU@{name}'] == pytest.approx(want.mean())


def test_near_boxes_needs_annotations_known_classes_and_a_radius():
    bound = dict(xbound=(-5, 5, 1), ybound=(-5, 5, 1))
    with pytest.raises(ValueError, match='map_bound'):
        BEVMapIoUMetric(classes=CLASSES, near_boxes=dict(classes=('car',)))
    with pytest.raises(ValueError, match='radius'):
        BEVMapIoUMetric(classes=CLASSES, near_boxes=dict(classes=('car',), radius=0), map_bound=bound)
    with pytest.raises(ValueError, match='classes'):
        BEVMapIoUMetric(classes=CLASSES, near_boxes=dict(class_names=('car',)), map_bound=bound)
    m = BEVMapIoUMetric(classes=CLASSES, near_boxes=dict(classes=('lorry',)), map_bound=bound)
    m.dataset_meta = {'classes': ('car', 'truck')}
    sample = {'pred_map': torch.zeros(6, 10, 10), 'gt_map': torch.zeros(6, 10, 10)}
    with pytest.raises(KeyError, match='eval_ann_info'):
        m.process({}, [sample])
    with pytest.raises(KeyError, match="'lorry'"):
        m.process({}, [dict(sample, eval_ann_info={'gt_bboxes_3d': np.zeros((0, 9)), 'gt_labels_3d': np.zeros(0)})])
