"""Convert BEVFusion checkpoints for a FULLER config (``tools/misc/convert_bevfusion.py``): build
the config's model, map the checkpoint's tensors into it (:mod:`fuller.models.bevfusion_weights`)
and save a checkpoint that FULLER's strict loader takes as it is."""

import torch
from mmengine.registry import init_default_scope

from fuller.models.bevfusion_weights import Conversion, convert_bevfusion, detect_source, merge
from fuller.registry import MODELS

from .checkpoint_io import extract_state_dict
from .config import read_config


def build_model(config: str):
    """The config's model and the class orders of its detection and map heads (None without the head)."""
    cfg = read_config(config)
    init_default_scope('fuller')
    model = MODELS.build(cfg.model)
    meta = cfg.model.get('metainfo') or {}
    heads = model.heads if hasattr(model, 'heads') else {}
    classes = meta.get('classes') if 'det' in heads else None
    map_classes = getattr(heads['map'], 'classes', None) if 'map' in heads else None
    return model, classes, map_classes


def convert(config: str, src: str, map_src: str | None = None, source: str = 'auto', box_convention=None,
            allow_partial: bool = False, log=print):
    """Build the config's model, convert ``src`` (and the map head of ``map_src``) into it and
    return ``(model with the converted tensors, Conversion)``."""
    model, classes, map_classes = build_model(config)
    target = model.state_dict()
    kw = dict(classes=tuple(classes) if classes else None, map_classes=tuple(map_classes) if map_classes else None,
              box_convention=box_convention)
    state = extract_state_dict(src)
    src_source = detect_source(state) if source == 'auto' else source
    log(f'{src}: {len(state)} tensors, {src_source} names')
    conv = convert_bevfusion(state, target, source=src_source, **kw)
    if map_src:
        map_state = extract_state_dict(map_src)
        map_source = detect_source(map_state) if source == 'auto' else source
        log(f'{map_src}: {len(map_state)} tensors, {map_source} names (its map head only)')
        conv = merge(conv, convert_bevfusion(map_state, target, source=map_source, only=('heads.map.',), **kw))
    log(conv.summary())
    if not conv.complete and not allow_partial:
        raise ValueError("the result would be partial (see above): is the config the checkpoint's model? "
                         '(--allow-partial writes it anyway)')
    with torch.no_grad():
        for k, v in conv.state.items():
            target[k].copy_(v)  # state_dict() tensors share the model's storage
    return model, conv


def save_converted(model, conv: Conversion, dst: str, sources: list[str], config: str) -> None:
    """Write the model's state dict (with its module metadata, which keeps mmdet3d's spconv
    loader from re-permuting the sparse kernels) and what was converted from where."""
    state = model.state_dict()
    meta = dict(converted_from=list(sources), config=config, complete=conv.complete, not_filled=list(conv.missing))
    torch.save({'state_dict': state, 'meta': meta}, dst)
