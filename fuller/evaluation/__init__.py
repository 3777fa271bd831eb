from .det_metric import NuScenesDetMetric, default_attributes, global_to_lidar, lidar_to_global
from .map_metric import BEVMapIoUMetric, map_iou_counts

__all__ = ['BEVMapIoUMetric', 'NuScenesDetMetric', 'default_attributes', 'global_to_lidar', 'lidar_to_global',
           'map_iou_counts']
