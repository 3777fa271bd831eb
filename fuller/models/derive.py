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
heads.det.tasks                                             = one task of all classes (if not given)
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


def derive_grids(encoders: dict, heads: dict, geometry: dict, metainfo: dict | None = None) -> tuple[dict, dict]:
    """Copies of the ``encoders`` and ``heads`` configs with every grid key of
    :data:`DERIVED_KEYS` written from ``geometry`` and the class lists from ``metainfo``."""
    encoders, heads = copy.deepcopy(encoders), copy.deepcopy(heads)
    metainfo = metainfo or {}
    missing = [k for k in ('point_cloud_range', 'voxel_size', 'bev_stride') if k not in geometry]
    if missing:
        raise KeyError(f'geometry has no {missing}')
    pc, vs, stride = list(geometry['point_cloud_range']), list(geometry['voxel_size']), int(geometry['bev_stride'])
    nx, ny, nz = grid_shape(geometry)
    if nx % stride or ny % stride:
        raise ValueError(f'geometry: {nx}x{ny} voxels are not a whole number of BEV cells of {stride} voxels')
    cell = bev_cell(geometry)

    lidar = encoders.get('lidar')
    if lidar is not None:
        vox = _sub(lidar, 'voxelize')
        _put(vox, 'voxel_size', vs, 'encoders.lidar.voxelize', 'voxel_size')
        _put(vox, 'point_cloud_range', pc, 'encoders.lidar.voxelize', 'point_cloud_range')
        bb = _sub(lidar, 'backbone')
        if str(bb.get('type', '')).endswith('ResidualSparseEncoder'):
            # mmdet3d's and BEVFusion's convention: one z voxel more than the range holds (41 for 40).
            _put(bb, 'sparse_shape', [nz + 1, ny, nx], 'encoders.lidar.backbone',
                 'voxels of the point-cloud range, z + 1 (mmdet3d SparseEncoder convention)')
        else:
            _put(bb, 'sparse_shape', [nz, ny, nx], 'encoders.lidar.backbone', 'voxels of the point-cloud range')
        if str(bb.get('type', '')).endswith('SparseBEVEncoder'):
            stages = math.log2(stride) + 1
            if stages != int(stages):
                raise ValueError(f'geometry.bev_stride={stride} must be a power of two for SparseBEVEncoder')
            _put(bb, 'stages', int(stages), 'encoders.lidar.backbone', f'bev_stride {stride} = 2^(stages-1)')

    camera = encoders.get('camera')
    if camera is not None:
        vt = _sub(camera, 'vtransform')
        h, w = geometry['image_size']
        fs = vt.pop('feature_stride', 8)
        down = vt.get('downsample', 1)
        _put(vt, 'image_size', [h, w], 'encoders.camera.vtransform', 'geometry.image_size')
        _put(vt, 'feature_size', [h // fs, w // fs], 'encoders.camera.vtransform',
             f'image_size // feature_stride {fs}')
        _put(vt, 'xbound', [pc[0], pc[3], cell[0] / down], 'encoders.camera.vtransform',
             f'x range at the BEV cell {cell[0]} m / downsample {down}')
        _put(vt, 'ybound', [pc[1], pc[4], cell[1] / down], 'encoders.camera.vtransform',
             f'y range at the BEV cell {cell[1]} m / downsample {down}')

    det = heads.get('det')
    if det is not None:
        classes = list(metainfo.get('classes', ()))
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
        coder = _sub(det, 'bbox_coder')
        _put(coder, 'out_size_factor', stride, 'heads.det.bbox_coder', 'bev_stride')
        _put(coder, 'voxel_size', vs[:2], 'heads.det.bbox_coder', 'voxel_size')
        _put(coder, 'pc_range', pc[:2], 'heads.det.bbox_coder', 'point_cloud_range')
        train = _sub(det, 'train_cfg')
        _put(train, 'grid_size', [nx, ny, nz], 'heads.det.train_cfg', 'voxels of the point-cloud range')
        _put(train, 'voxel_size', vs, 'heads.det.train_cfg', 'voxel_size')
        _put(train, 'out_size_factor', stride, 'heads.det.train_cfg', 'bev_stride')
        _put(train, 'point_cloud_range', pc, 'heads.det.train_cfg', 'point_cloud_range')
        test = _sub(det, 'test_cfg')
        _put(test, 'out_size_factor', stride, 'heads.det.test_cfg', 'bev_stride')
        _put(test, 'voxel_size', vs[:2], 'heads.det.test_cfg', 'voxel_size')
        _put(test, 'pc_range', pc[:2], 'heads.det.test_cfg', 'point_cloud_range')

    seg = heads.get('map')
    if seg is not None:
        gt = _sub(seg, 'grid_transform')
        _put(gt, 'input_scope', [[pc[0], pc[3], cell[0]], [pc[1], pc[4], cell[1]]], 'heads.map.grid_transform',
             'the shared BEV grid')
        if 'map_bound' in geometry:
            mb = geometry['map_bound']
            _put(gt, 'output_scope', [list(mb['xbound']), list(mb['ybound'])], 'heads.map.grid_transform',
                 'geometry.map_bound')
        if metainfo.get('map_classes'):
            _put(seg, 'classes', list(metainfo['map_classes']), 'heads.map', 'metainfo map_classes')
    return encoders, heads


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
