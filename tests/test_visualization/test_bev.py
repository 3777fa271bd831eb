"""Pictures paint each map class in its own colour, by name (fuller/visualization/bev.py)."""

import numpy as np
import pytest

from fuller.visualization import MAP_COLORS, map_to_rgb


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
