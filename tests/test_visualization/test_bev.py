"""Pictures paint each map class in its own colour, by name (fuller/visualization/bev.py)."""

import numpy as np
import pytest

from fuller.visualization import MAP_COLORS, SampleView, draw_sample, map_to_rgb, project_boxes


def test_map_colours_follow_the_class_names_not_their_positions():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    # A metainfo fork with two map classes, in another order than nuScenes' six.
    rgb = map_to_rgb(masks, ('divider', 'walkway'))
    np.testing.assert_array_equal(rgb[0, 0], MAP_COLORS['divider'])
    np.testing.assert_array_equal(rgb[3, 3], MAP_COLORS['walkway'])
    np.testing.assert_array_equal(rgb[1, 1], np.ones(3, np.float32))  # background stays white
    swapped = map_to_rgb(masks[::-1], ('walkway', 'divider'))
    np.testing.assert_array_equal(swapped, rgb)
    # Six distinct colours for the six nuScenes classes.
    assert len({tuple(c) for c in MAP_COLORS.values()}) == 6


def test_a_class_without_a_colour_gets_its_own_fixed_one_and_a_count_mismatch_is_an_error():
    masks = np.ones((1, 2, 2), bool)
    a, b = map_to_rgb(masks, ('lane',)), map_to_rgb(masks, ('lane',))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match='2 masks but 1 map classes'):
        map_to_rgb(np.zeros((2, 2, 2), bool), ('walkway',))


def _pinhole(f=100.0, w=200, h=100):
    """LiDAR (x forward, y left, z up) -> image pixels (u*d, v*d, d, 1) of a camera looking along +x."""
    cam_from_lidar = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float64)
    k = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)
    return k @ cam_from_lidar


def test_boxes_project_into_the_image_in_front_of_the_camera_only():
    boxes = np.array([[10.0, 0.0, -0.5, 4.0, 2.0, 1.5, 0.0],   # ahead, centred
                      [-10.0, 0.0, -0.5, 4.0, 2.0, 1.5, 0.0],  # behind the camera
                      [10.0, 40.0, -0.5, 4.0, 2.0, 1.5, 0.0]])  # ahead, far left: outside the image
    uv, shown = project_boxes(boxes, _pinhole(), None, (100, 200))
    assert shown.tolist() == [True, False, False]
    # the near face of the first box (x = 8 m, y = -+1 m) spans u = 100 -+ f * 1 / 8, the widest of its corners
    assert np.isclose(uv[0, :, 0].min(), 100 - 100 / 8) and np.isclose(uv[0, :, 0].max(), 100 + 100 / 8)
    flip = np.array([[-1, 0, 0, 199], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)  # u -> w - 1 - u
    uv_flip, _ = project_boxes(boxes, _pinhole(), flip, (100, 200))
    assert np.allclose(uv_flip[0, :, 0], 199 - uv[0, :, 0])


def test_draw_sample_paints_boxes_maps_and_cameras(tmp_path):
    import matplotlib.image as mpimg

    view = SampleView(points=np.random.default_rng(0).uniform(-40, 40, (500, 2)),
                      gt_boxes=np.array([[10.0, 0.0, -0.5, 4.0, 2.0, 1.5, 0.0]]),
                      pred_boxes=np.array([[10.5, 0.2, -0.5, 4.0, 2.0, 1.5, 0.1]]), pred_scores=np.array([0.8]),
                      pred_labels=np.array([0]), gt_map=np.ones((1, 20, 20), bool), pred_map=np.full((1, 20, 20), 0.9),
                      imgs=np.zeros((1, 100, 200, 3), np.uint8), lidar2img=_pinhole()[None])
    out = tmp_path / 'sample.png'
    draw_sample(str(out), view, map_classes=('drivable_area',), class_names=('car',), cam_names=('CAM_FRONT',))
    img = mpimg.imread(str(out))[..., :3]
    drivable = MAP_COLORS['drivable_area']
    assert (np.abs(img - drivable).max(-1) < 0.02).mean() > 0.05  # both map panels painted
    red = (img[..., 0] - img[..., 1] > 0.4) & (img[..., 0] - img[..., 2] > 0.4)
    green = (img[..., 1] - img[..., 0] > 0.4) & (img[..., 1] - img[..., 2] > 0.4)
    assert red[:, :img.shape[1] // 3].sum() > 100 and green[:, :img.shape[1] // 3].sum() > 100  # boxes: BEV, camera
    assert red[img.shape[0] // 2:, :img.shape[1] // 3].sum() > 50  # the predicted box drawn in the camera panel
    with pytest.raises(ValueError, match='1 map masks but map_classes'):
        draw_sample(str(out), view, map_classes=())


def test_plot_curves_draws_its_lines_and_says_so_when_there_are_none(tmp_path):
    """A study of single-task runs has no task-gradient cosine: its plot says so instead of
    drawing an empty legend (matplotlib's 'No artists with labels' warning)."""
    import warnings

    from PIL import Image

    from fuller.visualization import plot_curves

    x = np.arange(1, 51)
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='No artists with labels')
        plot_curves(str(tmp_path / 'one.png'), {'naive': {'': (x, np.exp(-x / 20))}}, 'loss', logy=True, smooth=5)
        plot_curves(str(tmp_path / 'none.png'), {}, 'cos', hline=0.0, smooth=10)
    one, none = (np.asarray(Image.open(tmp_path / f'{n}.png').convert('L')) for n in ('one', 'none'))
    assert one.shape == none.shape == (400, 700)
    assert (one < 128).sum() > (none < 128).sum() > 0  # a curve and its legend against the note alone
