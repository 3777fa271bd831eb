from .augmentation import BEVAugmentation, ImageAug3D
from .formatting import PackMultiTaskInputs
from .loading import DataFileError, LoadMultiSweepPoints, LoadMultiViewImages, load_points_file
from .map_raster import MAP_CLASSES, LoadBEVMapMask, rasterize_map
from .object_paste import ObjectPaste

__all__ = ['BEVAugmentation', 'ImageAug3D', 'PackMultiTaskInputs', 'DataFileError', 'LoadMultiSweepPoints',
           'LoadMultiViewImages', 'load_points_file', 'MAP_CLASSES', 'LoadBEVMapMask', 'rasterize_map',
           'ObjectPaste']
