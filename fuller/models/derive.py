"""Fill a FullerNet config from the setup's geometry and the dataset's metainfo.

A config states the grid once, as ``geometry`` at its top level (``point_cloud_range``,
``voxel_size``, ``bev_stride`` = voxels per shared BEV cell, ``image_size``, ``map_bound``;
see ``configs/_base_/datasets/``), and :func:`fuller.engine.config.resolve_config` hands it,
with the dataset's ``classes`` and ``map_classes``, to the model. From it
:func:`derive_grids` writes every grid key of the branches and heads (the table below); a
key the config sets to another value is an error naming it. Channel counts are filled once
the encoders are built (:func:`fill_channels`): the fuser takes the encoders'
``out_channels``, the decoder the fuser's (or the single encoder's), each head the decoder's.
"""

import copy
import math
from typing import NamedTuple

from fuller.utils.grid import bev_cell, grid_shape, same_value

# A grid key of the model config, and what it is in terms of the geometry (g) and the shared
# BEV cell (cell = voxel_size * bev_stride).
DERIVED_KEYS = """
encoders.lidar.voxelize.{voxel_size, point_cloud_range}     = g
encoders.lidar.backbone.sparse_shape                        = (nz, ny, nx) voxels of the range
                                                              (nz + 1 for ResidualSparseEncoder, as mmdet3d)
encoders.lidar.backbone.stages                              = log2(bev_stride) + 1  (SparseBEVEncoder)
encoders.camera.vtransform.image_size                       = g.image_size
encoders.camera.vtransform.feature_size                     = image_size // feature_stride (default 8)
encoders.camera.vtransform.{xbound, ybound}                 = range at cell / downsample
heads.det.{bbox_coder, train_cfg, test_cfg}: out_size_factor = bev_stride, voxel_size, pc range, grid_size
heads.det.tasks                                             = one task of all classes (if not given; CenterPoint)
heads.det.{num_classes, class_names}, test_cfg.grid_size   = the classes; as train_cfg (TransFusionHead)
heads.map.grid_transform.input_scope                        = range at cell
heads.map.grid_transform.output_scope                       = g.map_bound
heads.map.classes                                           = metainfo map_classes
"""


def _sub(cfg: dict, key: str) -> dict:
    """``cfg[key]``, created empty when missing. (Not ``setdefault``: on a ConfigDict it stores a
    converted copy, not the dict it returns. ConfigDicts are kept: some modules read their
    configs by attribute, e.g. mmdet's Swin reads ``init_cfg.checkpoint``.)"""
    if cfg.get(key) is None:
        cfg[key] = {}
    return cfg[key]


def _put(cfg: dict, key: str, value, path: str, why: str) -> None:
    """``cfg[key] = value``; a different value already there is an error naming ``path``."""
    if cfg.get(key) is not None and not same_value(cfg[key], value):
        raise ValueError(f'model.{path}.{key} = {cfg[key]!r} but the geometry gives {value!r} ({why}); '
                         f'leave it out of the config, or change the geometry')
    cfg[key] = value


class _Grid(NamedTuple):
    """The geometry as the derivations use it."""

    pc: list  # point_cloud_range
    vs: list  # voxel_size
    stride: int  # voxels per shared BEV cell
    nx: int
    ny: int
    nz: int
    cell: tuple  # shared BEV cell, m


def derive_grids(encoders: dict, heads: dict, geometry: dict, metainfo: dict | None = None) -> tuple[dict, dict]:
    """Copies of the ``encoders`` and ``heads`` configs with every grid key of
    :data:`DERIVED_KEYS` written from ``geometry`` and the class lists from ``metainfo``."""
    encoders, heads = copy.deepcopy(encoders), copy.deepcopy(heads)
    metainfo = metainfo or {}
    missing = [k for k in ('point_cloud_range', 'voxel_size', 'bev_stride') if k not in geometry]
    if missing:
        raise KeyError(f'geometry has no {missing}')
    stride = int(geometry['bev_stride'])
    nx, ny, nz = grid_shape(geometry)
    if nx % stride or ny % stride:
        raise ValueError(f'geometry: {nx}x{ny} voxels are not a whole number of BEV cells of {stride} voxels')
    g = _Grid(list(geometry['point_cloud_range']), list(geometry['voxel_size']), stride, nx, ny, nz,
              bev_cell(geometry))
    if encoders.get('lidar') is not None:
        _derive_lidar(encoders['lidar'], g)
    if encoders.get('camera') is not None:
        _derive_camera(encoders['camera'], g, geometry['image_size'])
    if heads.get('det') is not None:
        _derive_det(heads['det'], g, list(metainfo.get('classes', ())))
    if heads.get('map') is not None:
        _derive_map(heads['map'], g, geometry.get('map_bound'), metainfo.get('map_classes'))
    return encoders, heads


def _derive_lidar(lidar: dict, g: _Grid) -> None:
    vox = _sub(lidar, 'voxelize')
    _put(vox, 'voxel_size', g.vs, 'encoders.lidar.voxelize', 'voxel_size')
    _put(vox, 'point_cloud_range', g.pc, 'encoders.lidar.voxelize', 'point_cloud_range')
    bb = _sub(lidar, 'backbone')
    if str(bb.get('type', '')).endswith('ResidualSparseEncoder'):
        # mmdet3d's and BEVFusion's convention: one z voxel more than the range holds (41 for 40).
        _put(bb, 'sparse_shape', [g.nz + 1, g.ny, g.nx], 'encoders.lidar.backbone',
             'voxels of the point-cloud range, z + 1 (mmdet3d SparseEncoder convention)')
    else:
        _put(bb, 'sparse_shape', [g.nz, g.ny, g.nx], 'encoders.lidar.backbone', 'voxels of the point-cloud range')
    if str(bb.get('type', '')).endswith('SparseBEVEncoder'):
        stages = math.log2(g.stride) + 1
        if stages != int(stages):
            raise ValueError(f'geometry.bev_stride={g.stride} must be a power of two for SparseBEVEncoder')
        _put(bb, 'stages', int(stages), 'encoders.lidar.backbone', f'bev_stride {g.stride} = 2^(stages-1)')


def _derive_camera(camera: dict, g: _Grid, image_size) -> None:
    vt = _sub(camera, 'vtransform')
    h, w = image_size
    fs = vt.pop('feature_stride', 8)
    down = vt.get('downsample', 1)
    _put(vt, 'image_size', [h, w], 'encoders.camera.vtransform', 'geometry.image_size')
    _put(vt, 'feature_size', [h // fs, w // fs], 'encoders.camera.vtransform', f'image_size // feature_stride {fs}')
    _put(vt, 'xbound', [g.pc[0], g.pc[3], g.cell[0] / down], 'encoders.camera.vtransform',
         f'x range at the BEV cell {g.cell[0]} m / downsample {down}')
    _put(vt, 'ybound', [g.pc[1], g.pc[4], g.cell[1] / down], 'encoders.camera.vtransform',
         f'y range at the BEV cell {g.cell[1]} m / downsample {down}')


def _derive_det(det: dict, g: _Grid, classes: list) -> None:
    if str(det.get('type', '')).split('.')[-1] == 'TransFusionHead':
        _derive_transfusion_classes(det, classes)
        # BEVFusion's TransFusion configs state the sparse encoder's shape, z + 1 cells
        # ([1440, 1440, 41]), and its test_cfg carries the grid too; only x and y are used.
        size = [g.nx, g.ny, g.nz + 1]
        grid = dict(grid_size=size)
    else:
        _derive_tasks(det, classes)
        size, grid = [g.nx, g.ny, g.nz], {}  # mmdet3d's CenterPoint: the voxel grid ([1024, 1024, 40])
    for key, values in (
            ('bbox_coder', dict(out_size_factor=g.stride, voxel_size=g.vs[:2], pc_range=g.pc[:2])),
            ('train_cfg', dict(grid_size=size, voxel_size=g.vs, out_size_factor=g.stride,
                               point_cloud_range=g.pc)),
            ('test_cfg', dict(out_size_factor=g.stride, voxel_size=g.vs[:2], pc_range=g.pc[:2], **grid))):
        sub = _sub(det, key)
        for name, value in values.items():
            _put(sub, name, value, f'heads.det.{key}', _DET_WHY[name])


def _derive_tasks(det: dict, classes: list) -> None:
    """CenterPoint's class groups: one of all classes unless the config groups them."""
    if det.get('tasks') is None:
        if not classes:
            raise KeyError('model.heads.det.tasks is not set and the metainfo has no classes')
        det['tasks'] = [dict(num_class=len(classes), class_names=classes)]
    elif classes:
        named = [c for t in det['tasks'] for c in t['class_names']]
        if sorted(named) != sorted(classes) or len(set(named)) != len(named):
            raise ValueError(f'model.heads.det.tasks name {named} but the dataset classes are {classes}; '
                             f'group exactly the dataset classes, or leave tasks out for one group')
    for t in det['tasks']:
        _put(t, 'num_class', len(t['class_names']), 'heads.det.tasks[]', 'its class_names')


def _derive_transfusion_classes(det: dict, classes: list) -> None:
    """TransFusion's class count, and the label order its peak search reads class names from."""
    if not classes:
        if det.get('num_classes') is None:
            raise KeyError('model.heads.det.num_classes is not set and the metainfo has no classes')
        return
    _put(det, 'num_classes', len(classes), 'heads.det', 'the dataset classes')
    _put(det, 'class_names', list(classes), 'heads.det', 'the dataset classes')


_DET_WHY = dict(out_size_factor='bev_stride', voxel_size='voxel_size', pc_range='point_cloud_range',
                point_cloud_range='point_cloud_range', grid_size='voxels of the point-cloud range')


def _derive_map(seg: dict, g: _Grid, map_bound: dict | None, map_classes) -> None:
    gt = _sub(seg, 'grid_transform')
    _put(gt, 'input_scope', [[g.pc[0], g.pc[3], g.cell[0]], [g.pc[1], g.pc[4], g.cell[1]]],
         'heads.map.grid_transform', 'the shared BEV grid')
    if map_bound is not None:
        _put(gt, 'output_scope', [list(map_bound['xbound']), list(map_bound['ybound'])], 'heads.map.grid_transform',
             'geometry.map_bound')
    if map_classes:
        _put(seg, 'classes', list(map_classes), 'heads.map', 'metainfo map_classes')


def _channels(cfg: dict, *keys: str):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return None


def decoder_out_channels(decoder: dict) -> int:
    """Channels of the shared feature: the neck's outputs concatenated, else the backbone's
    last output."""
    neck = decoder.get('neck')
    if neck is not None:
        out = neck['out_channels']
        return sum(out) if isinstance(out, (list, tuple)) else int(out)
    out = decoder['backbone']['out_channels']
    return out[-1] if isinstance(out, (list, tuple)) else int(out)


def fill_channels(fuser: dict | None, decoder: dict, heads: dict, encoder_channels: dict[str, int]) -> tuple:
    """Copies of ``fuser``, ``decoder`` and ``heads`` with their input channels filled: the
    fuser from the built encoders' ``out_channels`` (camera first, then LiDAR), the decoder
    from the fuser's output (or the only encoder's), the neck from the decoder backbone's
    outputs, the heads from the shared feature. A config value that disagrees is an error."""
    fuser, decoder, heads = copy.deepcopy(fuser), copy.deepcopy(decoder), copy.deepcopy(heads)
    order = [k for k in ('camera', 'lidar') if k in encoder_channels]
    if len(order) > 1:
        if fuser is None:
            raise KeyError('model.fuser is required when both camera and lidar encoders are configured')
        _put(fuser, 'in_channels', [encoder_channels[k] for k in order], 'fuser', 'the encoders\' out_channels')
        into_decoder = fuser['out_channels']
    else:
        fuser = None
        into_decoder = encoder_channels[order[0]]
    bb = decoder['backbone']
    _put(bb, 'in_channels', into_decoder, 'decoder.backbone', 'the fuser\'s (or single encoder\'s) out_channels')
    if decoder.get('neck') is not None and _channels(bb, 'out_channels') is not None:
        _put(decoder['neck'], 'in_channels', list(bb['out_channels']), 'decoder.neck', 'decoder.backbone.out_channels')
    shared = decoder_out_channels(decoder)
    for name, head in heads.items():
        if head is not None:
            _put(head, 'in_channels', shared, f'heads.{name}', 'the decoder\'s output channels')
    return fuser, decoder, heads
