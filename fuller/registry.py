"""FULLER's registries.

Every registry is a child of mmdet3d's registry of the same kind, so configs written with
``default_scope='fuller'`` resolve FULLER's own classes first and then mmdet3d's
(``SECOND``, ``SECONDFPN``, ``LoadPointsFromFile``, ...) and mmengine's. mmdet classes are
named with their scope, e.g. ``type='mmdet.ResNet'``.
"""

from mmdet3d.registry import DATA_SAMPLERS as MMDET3D_DATA_SAMPLERS
from mmdet3d.registry import DATASETS as MMDET3D_DATASETS
from mmdet3d.registry import HOOKS as MMDET3D_HOOKS
from mmdet3d.registry import LOOPS as MMDET3D_LOOPS
from mmdet3d.registry import METRICS as MMDET3D_METRICS
from mmdet3d.registry import MODEL_WRAPPERS as MMDET3D_MODEL_WRAPPERS
from mmdet3d.registry import MODELS as MMDET3D_MODELS
from mmdet3d.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMDET3D_OPTIM_WRAPPER_CONSTRUCTORS
from mmdet3d.registry import OPTIM_WRAPPERS as MMDET3D_OPTIM_WRAPPERS
from mmdet3d.registry import TASK_UTILS as MMDET3D_TASK_UTILS
from mmdet3d.registry import TRANSFORMS as MMDET3D_TRANSFORMS
from mmdet3d.registry import VISBACKENDS as MMDET3D_VISBACKENDS
from mmdet3d.registry import VISUALIZERS as MMDET3D_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMDET3D_MODELS, scope='fuller', locations=['fuller.models'])
DATASETS = Registry('dataset', parent=MMDET3D_DATASETS, scope='fuller', locations=['fuller.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMDET3D_DATA_SAMPLERS, scope='fuller', locations=['fuller.datasets']
)
TRANSFORMS = Registry(
    'transform', parent=MMDET3D_TRANSFORMS, scope='fuller', locations=['fuller.datasets.transforms']
)
METRICS = Registry('metric', parent=MMDET3D_METRICS, scope='fuller', locations=['fuller.evaluation'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMDET3D_MODEL_WRAPPERS, scope='fuller', locations=['fuller.engine']
)
HOOKS = Registry('hook', parent=MMDET3D_HOOKS, scope='fuller', locations=['fuller.engine'])
LOOPS = Registry('loop', parent=MMDET3D_LOOPS, scope='fuller', locations=['fuller.engine'])
OPTIM_WRAPPERS = Registry(
    'optim wrapper', parent=MMDET3D_OPTIM_WRAPPERS, scope='fuller', locations=['fuller.engine']
)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMDET3D_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='fuller',
    locations=['fuller.engine'],
)
TASK_UTILS = Registry('task util', parent=MMDET3D_TASK_UTILS, scope='fuller', locations=['fuller.models'])
VISUALIZERS = Registry('visualizer', parent=MMDET3D_VISUALIZERS, scope='fuller')
VISBACKENDS = Registry('vis_backend', parent=MMDET3D_VISBACKENDS, scope='fuller')
