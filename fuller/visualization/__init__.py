from .bev import MAP_COLORS, box_corners_bev, draw_sample, map_color, map_to_rgb, plot_curves

__all__ = ['MAP_COLORS', 'box_corners_bev', 'draw_sample', 'map_color', 'map_to_rgb', 'plot_curves']
