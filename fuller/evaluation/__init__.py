from .map_metric import BEVMapIoUMetric, map_iou_counts

__all__ = ['BEVMapIoUMetric', 'map_iou_counts']
