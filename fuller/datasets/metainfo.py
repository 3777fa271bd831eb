"""The dataset facts of nuScenes, stated once.

Everything else reads them from here, or from a built dataset's ``metainfo`` (metrics and
hooks through ``dataset_meta``): :class:`~fuller.datasets.NuScenesMultiTaskDataset` exposes
them as its ``METAINFO``, and a config overrides any of them with the dataset's ``metainfo``
(e.g. ``metainfo = dict(classes=[...])`` at the top level of a config, which
:func:`fuller.engine.config.resolve_config` hands to the datasets and the model).

This module imports nothing heavy, so the info writer and the demo generator use it too.
"""

# Detection classes of the nuScenes detection challenge, in the label order of the heads.
CLASSES = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle', 'motorcycle', 'pedestrian',
           'traffic_cone', 'barrier')

# BEV map classes (BEVFusion's protocol).
MAP_CLASSES = ('drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider')

# Map-expansion layers, as the devkit's NuScenesMap names them.
MAP_POLYGON_LAYERS = ('drivable_area', 'road_segment', 'road_block', 'lane', 'ped_crossing', 'walkway', 'stop_line',
                      'carpark_area')
MAP_LINE_LAYERS = ('road_divider', 'lane_divider')


def map_class_layers(name: str) -> tuple[str, ...]:
    """The map-expansion layers a map class is rasterized from, by BEVFusion's rule
    (``LoadBEVSegmentation`` in mit-han-lab/bevfusion ``mmdet3d/datasets/pipelines/loading.py``):
    ``divider`` is the road and lane dividers, ``drivable_area*`` the road segments and lanes,
    every other class the layer of its own name (``drivable_area`` is the ``drivable_area``
    layer, which also covers car parks and other drivable surface off the roads)."""
    return {'divider': MAP_LINE_LAYERS, 'drivable_area*': ('road_segment', 'lane')}.get(name, (name,))


# Map class -> layers of each map class (the metainfo's ``map_layers``); a dataset that
# defines a class otherwise overrides it there (the demo: ``configs/_base_/datasets/nuscenes-demo_det-map.py``).
MAP_LAYERS = {c: map_class_layers(c) for c in MAP_CLASSES}

# Camera channels in the order the info files store them and the model sees them.
CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')
# Where each camera's panel goes in pictures (2 rows x 3, as the cameras sit on the car):
# indices into CAMERAS, row-major.
CAMERA_PANELS = (2, 0, 1, 4, 3, 5)

# nuScenes category -> detection class (the devkit's mapping for the detection challenge);
# categories not listed (animals, debris, bicycle racks, pushable_pullable, ...) are no class.
CATEGORY_TO_CLASS = {
    'vehicle.car': 'car', 'vehicle.truck': 'truck', 'vehicle.trailer': 'trailer', 'vehicle.bus.bendy': 'bus',
    'vehicle.bus.rigid': 'bus', 'vehicle.construction': 'construction_vehicle', 'vehicle.bicycle': 'bicycle',
    'vehicle.motorcycle': 'motorcycle', 'human.pedestrian.adult': 'pedestrian', 'human.pedestrian.child': 'pedestrian',
    'human.pedestrian.construction_worker': 'pedestrian', 'human.pedestrian.police_officer': 'pedestrian',
    'movable_object.trafficcone': 'traffic_cone', 'movable_object.barrier': 'barrier',
}

# Attribute groups of the detection classes (the devkit's attribute families).
VEHICLES = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle')
CYCLES = ('bicycle', 'motorcycle')
# The attribute of a box that is not moving, per class. The convention of the devkit's
# baselines, mmdet3d's NuScenesMetric and BEVFusion: a still bus is 'vehicle.stopped', every
# other still vehicle 'vehicle.parked'; classes without attributes get ''.
STILL_ATTRIBUTES = {**dict.fromkeys(VEHICLES, 'vehicle.parked'), 'bus': 'vehicle.stopped',
                    **dict.fromkeys(CYCLES, 'cycle.without_rider'), 'pedestrian': 'pedestrian.standing',
                    'traffic_cone': '', 'barrier': ''}
# ... and of a moving one (speed above MOVING_SPEED m/s).
MOVING_ATTRIBUTES = {**dict.fromkeys(VEHICLES, 'vehicle.moving'), **dict.fromkeys(CYCLES, 'cycle.with_rider'),
                     'pedestrian': 'pedestrian.moving', 'traffic_cone': '', 'barrier': ''}
MOVING_SPEED = 0.2

NUSCENES_METAINFO = dict(
    classes=CLASSES,
    map_classes=MAP_CLASSES,
    map_layers=MAP_LAYERS,
    cameras=CAMERAS,
    category_to_class=CATEGORY_TO_CLASS,
    still_attributes=STILL_ATTRIBUTES,
    moving_attributes=MOVING_ATTRIBUTES,
)


def camera_panel_order(cameras) -> list[str]:
    """``cameras`` in picture order: the rig's panels first (those present), then any others."""
    cameras = list(cameras)
    rig = [CAMERAS[i] for i in CAMERA_PANELS if CAMERAS[i] in cameras]
    return rig + [c for c in cameras if c not in rig]
