"""BEVFusion's trained weights in FULLER's names and layouts.

Two sources are read:

- **BEVFusion-MIT** (``mit-han-lab/bevfusion``): ``encoders.camera.{backbone,neck,vtransform}``,
  ``encoders.lidar.backbone``, ``fuser``, ``decoder.{backbone,neck}``, ``heads.{object,map}``;
- **mmdet3d's port** (``projects/BEVFusion``): ``img_backbone``, ``img_neck``, ``view_transform``,
  ``pts_middle_encoder``, ``fusion_layer``, ``pts_backbone``, ``pts_neck``, ``bbox_head``, with
  mmdet's ``DetrTransformerDecoderLayer`` names in the head's decoder.

What changes on the way, and why:

1. **Names.** FULLER uses BEVFusion-MIT's module names with two exceptions: the detection head
   is ``heads.det`` (``heads.object``), the fuser's conv stack ``fuser.fuse`` (``fuser``), the
   map head's ``classifier.{0,1,3,4}`` / ``classifier.6`` are ``body.*`` / ``cls``.
2. **BEV layout.** Both sources keep BEV maps as ``[B, C, X, Y]``; FULLER keeps ``[B, C, Y, X]``.
   A 2-D kernel that runs on a BEV map is brought over with ``W.transpose(-1, -2)``: then
   ``conv(x^T, W^T) = conv(x, W)^T``, so every BEV conv stack computes the same map, transposed
   (the view transform's downsample, the fuser, SECOND, SECONDFPN's deconvs, the TransFusion
   head's shared and heatmap convs, the map head's convs). Kernels on the image plane (Swin-T,
   the neck, the depth convs) and the head's 1-D convs over queries are unchanged.
3. **Sparse kernels.** The LiDAR encoder's voxel axes are ``(x, y, z)`` in both sources and
   ``(z, y, x)`` in FULLER (mmdet3d's ``SparseEncoder`` order). BEVFusion-MIT's bundled spconv
   1.x stores a kernel as ``[kx, ky, kz, in, out]``, spconv 2.x as ``[out, kx, ky, kz, in]``;
   FULLER's spconv 2.x kernel is ``[out, kz, ky, kx, in]``. Which of the two source layouts a
   kernel has is read off its shape (its channel axes are never 1 or 3 long).
4. **Class order.** BEVFusion orders its 10 classes car, truck, construction_vehicle, bus,
   trailer, barrier, motorcycle, bicycle, pedestrian, traffic_cone
   (``configs/nuscenes/default.yaml: object_classes``); FULLER takes its order from the
   dataset's metainfo. The class-indexed tensors (the dense heatmap conv's outputs, the class
   encoding's inputs, each prediction head's heatmap outputs; the map head's outputs) are
   permuted by class name.
5. **Box convention (BEVFusion-MIT only).** BEVFusion-MIT trains on mmdet3d 0.x boxes: its info
   files store ``(w, l, h)`` and yaw ``-yaw - pi/2`` (``tools/data_converter/nuscenes_converter.py``:
   ``gt_boxes = [locs, dims, -rots - pi / 2]``, ``dims = b.wlh``). FULLER (mmdet3d 1.x) uses
   ``(l, w, h)`` and the nuScenes yaw. The head's last ``dim`` conv has its first two output rows
   swapped, and the ``rot`` conv's outputs ``(sin a, cos a)`` of ``a = -yaw - pi/2`` become
   ``(sin yaw, cos yaw) = (-cos a, -sin a)``: a signed swap of its two output rows. mmdet3d's
   port trains on mmdet3d 1.x boxes: unchanged.
6. **Dropped.** BEVFusion stores the view transform's grid constants ``frustum``, ``dx``, ``bx``
   and ``nx`` as parameters; FULLER derives them from the config.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor

# configs/nuscenes/default.yaml (BEVFusion-MIT): object_classes, map_classes.
BEVFUSION_CLASSES = ('car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle',
                     'bicycle', 'pedestrian', 'traffic_cone')
BEVFUSION_MAP_CLASSES = ('drivable_area', 'ped_crossing', 'walkway', 'stop_line', 'carpark_area', 'divider')

SOURCES = ('bevfusion-mit', 'mmdet3d')

# BEVFusion stores these grid constants as parameters; FULLER derives them.
_GRID = re.compile(r'^encoders\.camera\.vtransform\.(frustum|dx|bx|nx)$')

# mmdet3d projects/BEVFusion prefix -> BEVFusion-MIT prefix.
_MMDET3D_PREFIXES = (
    ('img_backbone.', 'encoders.camera.backbone.'),
    ('img_neck.', 'encoders.camera.neck.'),
    ('view_transform.', 'encoders.camera.vtransform.'),
    ('pts_middle_encoder.', 'encoders.lidar.backbone.'),
    ('fusion_layer.', 'fuser.'),
    ('pts_backbone.', 'decoder.backbone.'),
    ('pts_neck.', 'decoder.neck.'),
    ('bbox_head.', 'heads.object.'),
    ('seg_head.', 'heads.map.'),
)
# mmdet's DetrTransformerDecoderLayer (mmdet3d's port) -> BEVFusion-MIT's TransformerDecoderLayer.
_MMDET3D_DECODER = (
    (re.compile(r'\.self_attn\.attn\.'), '.self_attn.'),
    (re.compile(r'\.cross_attn\.attn\.'), '.multihead_attn.'),
    (re.compile(r'\.ffn\.layers\.0\.0\.'), '.linear1.'),
    (re.compile(r'\.ffn\.layers\.1\.'), '.linear2.'),
    (re.compile(r'\.norms\.0\.'), '.norm1.'),
    (re.compile(r'\.norms\.1\.'), '.norm2.'),
    (re.compile(r'\.norms\.2\.'), '.norm3.'),
)
# BEVFusion-MIT names -> FULLER names (after the prefixes above).
_RENAMES = (
    (re.compile(r'^heads\.object\.'), 'heads.det.'),
    (re.compile(r'^fuser\.(\d+)\.'), r'fuser.fuse.\1.'),
    (re.compile(r'^heads\.map\.classifier\.([0134])\.'), r'heads.map.body.\1.'),
    (re.compile(r'^heads\.map\.classifier\.6\.'), 'heads.map.cls.'),
)
# 2-D kernels that run on a BEV map (FULLER names).
_BEV_KERNEL = re.compile(
    r'^(encoders\.camera\.vtransform\.downsample\.\d+\.weight'
    r'|fuser\.fuse\.0\.weight'
    r'|decoder\.(backbone|neck)\..*\.weight'
    r'|heads\.det\.(shared_conv|heatmap_head\.0\.conv|heatmap_head\.1)\.weight'
    r'|heads\.map\.(body\.[03]|cls)\.weight)$')
_SPARSE_KERNEL = re.compile(r'^encoders\.lidar\.backbone\..*\.weight$')


def unit_of(key: str) -> str:
    """The FULLER module a tensor belongs to, for the per-module counts."""
    parts = key.split('.')
    if parts[0] == 'encoders':
        return '.'.join(parts[:3])
    if parts[0] in ('decoder', 'heads'):
        return '.'.join(parts[:2])
    return parts[0]


@dataclass
class Conversion:
    """What :func:`convert_bevfusion` did: the converted tensors and, per FULLER module, how many
    target tensors were filled; the source tensors dropped (with the reason) and those that
    matched nothing; the target tensors that stayed empty."""

    state: dict[str, Tensor] = field(default_factory=dict)
    changes: dict[str, list[str]] = field(default_factory=dict)  # FULLER key -> what was done to it
    dropped: dict[str, str] = field(default_factory=dict)  # source key -> why
    unmatched: list[str] = field(default_factory=list)  # source keys with no FULLER tensor
    missing: list[str] = field(default_factory=list)  # FULLER keys no source tensor filled
    target_units: Counter = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        return not self.unmatched and not self.missing

    def counts(self) -> list[tuple[str, int, int]]:
        """``(module, filled, total)`` per FULLER module, in state-dict order."""
        filled = Counter(unit_of(k) for k in self.state)
        return [(u, filled[u], n) for u, n in self.target_units.items()]

    def summary(self) -> str:
        width = max((len(u) for u in self.target_units), default=10)
        lines = [f'{"module":<{width}}  filled / total']
        lines += [f'{u:<{width}}  {f:>6} / {n}' for u, f, n in self.counts()]
        total = sum(self.target_units.values())
        lines.append(f'{"all":<{width}}  {len(self.state):>6} / {total}')
        kinds = Counter(c for cs in self.changes.values() for c in cs)
        if kinds:
            lines.append('changed: ' + ', '.join(f'{k} {n}' for k, n in sorted(kinds.items())))
        reasons = Counter(self.dropped.values())
        for why, n in reasons.items():
            lines.append(f'dropped {n}: {why}')
        if self.unmatched:
            lines.append(f'{len(self.unmatched)} source tensors match no FULLER tensor, e.g. {self.unmatched[:3]}')
        if self.missing:
            lines.append(f'{len(self.missing)} FULLER tensors not filled, e.g. {self.missing[:3]}')
        return '\n'.join(lines)


def detect_source(state: dict[str, Tensor]) -> str:
    """``'bevfusion-mit'`` or ``'mmdet3d'`` from the names; ValueError when neither."""
    if any(k.startswith(p) for k in state for p, _ in _MMDET3D_PREFIXES):
        return 'mmdet3d'
    if any(k.startswith(('encoders.', 'fuser.', 'decoder.', 'heads.object.', 'heads.map.')) for k in state):
        return 'bevfusion-mit'
    raise ValueError('not a BEVFusion checkpoint: no tensor is named like BEVFusion-MIT '
                     "('encoders.', 'fuser.', 'decoder.', 'heads.') or mmdet3d projects/BEVFusion "
                     f"({', '.join(repr(p) for p, _ in _MMDET3D_PREFIXES[:4])}, ...); first keys: "
                     f'{list(state)[:3]}')


def _fuller_name(key: str, source: str) -> str:
    if source == 'mmdet3d':
        for old, new in _MMDET3D_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        if key.startswith('heads.object.decoder.'):
            for pat, new in _MMDET3D_DECODER:
                key = pat.sub(new, key)
    for pat, new in _RENAMES:
        key = pat.sub(new, key)
    return key


def _sparse_kernel(w: Tensor, want: torch.Size) -> tuple[Tensor, str]:
    """A 5-D sparse kernel in (x, y, z) order, spconv 1.x or 2.x, -> FULLER's [out, z, y, x, in]."""
    out, kz, ky, kx, cin = want
    if tuple(w.shape) == (kx, ky, kz, cin, out):  # spconv 1.x: [x, y, z, in, out]
        return w.permute(4, 2, 1, 0, 3).contiguous(), 'sparse kernel spconv1 (x,y,z) -> spconv2 (z,y,x)'
    if tuple(w.shape) == (out, kx, ky, kz, cin):  # spconv 2.x: [out, x, y, z, in]
        return w.permute(0, 3, 2, 1, 4).contiguous(), 'sparse kernel (x,y,z) -> (z,y,x)'
    raise ValueError(f'a sparse kernel of shape {tuple(w.shape)} is neither spconv 1.x [kx, ky, kz, in, out] '
                     f'nor 2.x [out, kx, ky, kz, in] of the wanted {tuple(want)}')


def _permute_classes(key: str, w: Tensor, src: tuple, dst: tuple, what: str) -> Tensor:
    if tuple(src) == tuple(dst):
        return w
    missing = [c for c in dst if c not in src]
    if missing:
        raise ValueError(f'{key}: the config\'s {what} {missing} are not among the checkpoint\'s {list(src)}')
    index = torch.tensor([src.index(c) for c in dst])
    axis = 1 if key.endswith('class_encoding.weight') else 0
    return w.index_select(axis, index)


def _is_class_indexed(key: str) -> str | None:
    if re.match(r'^heads\.det\.(heatmap_head\.1\.(weight|bias)|class_encoding\.weight'
                r'|prediction_heads\.\d+\.heatmap\.1\.(weight|bias))$', key):
        return 'det'
    if re.match(r'^heads\.map\.cls\.(weight|bias)$', key):
        return 'map'
    return None


def _box_convention(key: str, w: Tensor) -> tuple[Tensor, str] | None:
    """mmdet3d 0.x -> 1.x boxes on the prediction heads' last dim/rot convs (see the module doc)."""
    if re.match(r'^heads\.det\.prediction_heads\.\d+\.dim\.1\.(weight|bias)$', key):
        return w[[1, 0, 2]], 'box dims (w, l, h) -> (l, w, h)'
    if re.match(r'^heads\.det\.prediction_heads\.\d+\.rot\.1\.(weight|bias)$', key):
        return -w[[1, 0]], 'box yaw -yaw-pi/2 -> yaw'
    return None


def convert_bevfusion(state: dict[str, Tensor], target: dict[str, Tensor | torch.Size], *,
                      source: str = 'auto', classes: tuple | None = None, map_classes: tuple | None = None,
                      src_classes: tuple = BEVFUSION_CLASSES, src_map_classes: tuple = BEVFUSION_MAP_CLASSES,
                      box_convention: str | None = None, only: tuple[str, ...] | None = None) -> Conversion:
    """Convert a BEVFusion state dict for a FULLER model.

    Args:
        state: the checkpoint's state dict.
        target: the FULLER model's state dict (tensors or shapes), which fixes names and shapes.
        source: ``'bevfusion-mit'``, ``'mmdet3d'`` or ``'auto'`` (:func:`detect_source`).
        classes, map_classes: the FULLER model's detection and map class order (None: the
            checkpoint's order is kept).
        src_classes, src_map_classes: the checkpoint's class order (BEVFusion's by default).
        box_convention: ``'0.x'`` (BEVFusion-MIT's boxes) or ``'1.x'``; None: by ``source``.
        only: FULLER module prefixes to fill (e.g. ``('heads.map.',)``); other tensors of the
            checkpoint are dropped as "taken from the other checkpoint".
    """
    source = detect_source(state) if source == 'auto' else source
    if source not in SOURCES:
        raise ValueError(f'source must be one of {SOURCES} or auto, got {source!r}')
    box_convention = box_convention or ('0.x' if source == 'bevfusion-mit' else '1.x')
    shapes = {k: (v.shape if isinstance(v, Tensor) else torch.Size(v)) for k, v in target.items()}
    conv = Conversion(target_units=Counter(unit_of(k) for k in shapes))
    for key, w in state.items():
        if not isinstance(w, Tensor):
            conv.dropped[key] = 'not a tensor'
            continue
        name = _fuller_name(key, source)
        if _GRID.match(name):
            conv.dropped[key] = 'grid constant (frustum/dx/bx/nx): FULLER derives it from the config'
            continue
        if only is not None and not name.startswith(only):
            conv.dropped[key] = f'taken from the other checkpoint (this one gives only {", ".join(only)})'
            continue
        if name not in shapes:
            conv.unmatched.append(key)
            continue
        want, done = shapes[name], []
        if w.dim() == 5 and _SPARSE_KERNEL.match(name):
            w, what = _sparse_kernel(w, want)
            done.append(what)
        elif w.dim() == 4 and _BEV_KERNEL.match(name):
            w = w.transpose(-1, -2).contiguous()
            done.append('BEV kernel [X, Y] -> [Y, X]')
        kind = _is_class_indexed(name)
        if kind == 'det' and classes is not None:
            w = _permute_classes(name, w, tuple(src_classes), tuple(classes), 'detection classes')
            done.append('class order')
        elif kind == 'map' and map_classes is not None:
            w = _permute_classes(name, w, tuple(src_map_classes), tuple(map_classes), 'map classes')
            done.append('map class order')
        if box_convention == '0.x':
            changed = _box_convention(name, w)
            if changed is not None:
                w, what = changed
                done.append(what)
        if w.shape != want:
            raise ValueError(f'{key} -> {name}: shape {tuple(w.shape)} after conversion, the config wants '
                             f'{tuple(want)} (is the config the checkpoint\'s model?)')
        conv.state[name] = w
        if done:
            conv.changes[name] = done
    wanted = [k for k in shapes if only is None or k.startswith(only)]
    conv.missing = [k for k in wanted if k not in conv.state]
    return conv


def merge(det: Conversion, map_: Conversion) -> Conversion:
    """One joint det+map starting point: everything from ``det`` but the map head, which comes
    from ``map_`` (converted with ``only=('heads.map.',)``)."""
    out = Conversion(target_units=det.target_units)
    out.state = {k: v for k, v in det.state.items() if not k.startswith('heads.map.')}
    out.state.update(map_.state)
    out.changes = {**{k: v for k, v in det.changes.items() if not k.startswith('heads.map.')}, **map_.changes}
    out.dropped = {**{f'det:{k}': v for k, v in det.dropped.items()}, **{f'map:{k}': v for k, v in map_.dropped.items()}}
    out.unmatched = [f'det:{k}' for k in det.unmatched] + [f'map:{k}' for k in map_.unmatched]
    out.missing = [k for k in dict.fromkeys(det.missing + map_.missing) if k not in out.state]
    return out
