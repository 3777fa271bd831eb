from .bev import (
    MAP_COLORS,
    SampleView,
    box_corners_bev,
    draw_sample,
    map_color,
    map_to_rgb,
    plot_curves,
    plot_task_tradeoff,
    project_boxes,
)

__all__ = ['MAP_COLORS', 'SampleView', 'box_corners_bev', 'draw_sample', 'map_color', 'map_to_rgb', 'plot_curves',
           'plot_task_tradeoff', 'project_boxes']
