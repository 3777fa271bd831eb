"""Weight initialisation that reaches every submodule, and checked ``Pretrained`` loading.

mmengine's :meth:`BaseModule.init_weights` recurses only into children that have an
``init_weights`` of their own, so a :class:`~mmengine.model.BaseModule` that sits inside a
plain container (an ``nn.ModuleDict`` / ``nn.ModuleList`` / ``nn.Sequential`` or any
``nn.Module`` wrapper, e.g. mmdet3d's ``CenterHead.task_heads``) is never initialised and
its ``init_cfg`` is silently ignored. :func:`init_weights_everywhere` runs mmengine's own
recursion with those containers made transparent, so every ``BaseModule`` is initialised
in mmengine's order (a module's own ``init_cfg``, then its children, then its
``Pretrained`` weights) and mmengine's init-info log lists every parameter. A module whose
own ``init_weights`` does not call mmengine's (mmdet's Swin Transformer) owns its subtree.

``Pretrained`` ``init_cfg``\\ s must name local files (nothing is downloaded at run time);
a missing file is an error naming the config key and the file before anything is loaded,
and after loading every pretrained module reports what it took from the file (matched,
missing, unexpected and shape-mismatched keys). A file none of whose tensors fit the module
is an error: it is never silently ignored.
"""

import logging
import os.path as osp
from contextlib import contextmanager
from functools import partial

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from torch import nn

# Where the checkpoint files the project's configs name come from (by file name): the error for
# a missing one says it.
CHECKPOINT_SOURCES = {
    'demo-camera_r18-tiny_seg.pth': 'the demo camera pretraining makes it: python tools/pretrain_demo_camera.py '
                                    '(tools/run_demo.sh runs it)',
    'swint-nuimages-pretrained.pth': "BEVFusion's nuImages Swin-T (its tools/download_pretrained.sh; docs/nuscenes.md)",
}
_REMOTE = ('http://', 'https://', 'torchvision://', 'open-mmlab://', 'mmcls://', 'modelzoo://', 'pavi://', 's3://')


def pretrained_cfgs(module: BaseModule) -> list[dict]:
    """The ``Pretrained`` entries of a module's ``init_cfg``."""
    cfgs = module.init_cfg or []
    cfgs = [cfgs] if isinstance(cfgs, dict) else list(cfgs)
    return [c for c in cfgs if c.get('type') == 'Pretrained']


def _pretrained_modules(root: nn.Module, prefix: str) -> list[tuple[str, BaseModule, dict]]:
    out = []
    for name, m in root.named_modules():
        if isinstance(m, BaseModule):
            for cfg in pretrained_cfgs(m):
                out.append((f'{prefix}.{name}' if name else prefix, m, cfg))
    return out


def check_pretrained_files(root: nn.Module, prefix: str = 'model') -> None:
    """Raise before any weight is touched if a ``Pretrained`` checkpoint is not a local file.

    Raises:
        FileNotFoundError: naming the config key (``model.<module path>.init_cfg``) and the file.
        ValueError: for a remote address (download it once and point the config at the file).
    """
    for key, _, cfg in _pretrained_modules(root, prefix):
        ckpt = str(cfg.get('checkpoint', ''))
        if ckpt.startswith(_REMOTE):
            raise ValueError(f'{key}.init_cfg: checkpoint={ckpt!r} is a remote address; FULLER downloads nothing at '
                             f'run time: download the file once and set checkpoint to its local path')
        if not osp.isfile(ckpt):
            source = CHECKPOINT_SOURCES.get(osp.basename(ckpt))
            raise FileNotFoundError(f'{key}.init_cfg: pretrained checkpoint {ckpt!r} does not exist '
                                    f'(relative paths are resolved from {osp.abspath(".")})'
                                    + (f'; {source}' if source else ''))


def _init_children(module: nn.Module) -> None:
    """mmengine's child loop of ``BaseModule.init_weights``, for a plain container."""
    for child in module.children():
        if hasattr(child, 'init_weights') and not getattr(child, 'is_init', False):
            child.init_weights()
            if hasattr(child, '_params_init_info'):
                update_init_info(child, init_info=f'Initialized by `init_weights` in {child.__class__.__name__} ')


def _custom_init_then_mark(module: BaseModule, original) -> None:
    """Run a class's own ``init_weights``; the subtree it owns counts as initialised.

    A ``BaseModule`` that overrides ``init_weights`` without calling mmengine's (e.g.
    mmdet's Swin Transformer, which initialises or loads its whole subtree itself) stops
    mmengine's recursion by contract; its descendants must not be initialised again (that
    would overwrite the weights it loaded), so they are marked initialised.
    """
    original()
    for m in module.modules():
        if isinstance(m, BaseModule):
            m._is_init = True


@contextmanager
def _reach_everything(root: nn.Module):
    """Make mmengine's recursion reach every ``BaseModule`` below ``root``.

    Plain modules that hold a ``BaseModule`` get an ``init_weights`` that recurses into their
    children; ``BaseModule``\\s with their own ``init_weights`` mark their subtree afterwards.
    """
    patched = []
    for m in root.modules():
        if m is root:
            continue
        if isinstance(m, BaseModule):
            if type(m).init_weights is not BaseModule.init_weights:
                m.init_weights = partial(_custom_init_then_mark, m, m.init_weights)
                patched.append(m)
        elif not hasattr(m, 'init_weights') and any(isinstance(d, BaseModule) for d in m.modules()):
            m.init_weights = partial(_init_children, m)
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.init_weights


def _checkpoint_state(cfg: dict, module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a ``Pretrained`` cfg offers ``module``, keyed as the module's state dict."""
    ckpt = torch.load(cfg['checkpoint'], map_location='cpu', weights_only=True)
    state = ckpt
    if isinstance(ckpt, dict):
        for key in ('state_dict', 'model'):
            if key in ckpt and isinstance(ckpt[key], dict):
                state = ckpt[key]
                break
    state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if hasattr(module, 'convert_weights'):
        # mmdet's Swin loads by itself: original Swin keys are converted (to 'backbone.*'), and
        # only 'backbone.*' keys are taken, whatever the prefix.
        if module.convert_weights:
            from mmdet.models.backbones.swin import swin_converter

            state = swin_converter(state)
        return {k[9:]: v for k, v in state.items() if k.startswith('backbone.')}
    prefix = cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def report_pretrained(root: nn.Module, prefix: str = 'model') -> list[dict]:
    """Log, for every ``Pretrained`` module, what it took from its file; return the reports.

    Raises:
        ValueError: when no tensor of the file fits the module (wrong file or ``prefix``).
    """
    reports = []
    for key, module, cfg in _pretrained_modules(root, prefix):
        offered = _checkpoint_state(cfg, module)
        own = module.state_dict()
        # What the module holds now, not what a loader claims: a tensor counts as loaded when it
        # equals the file's (modules with their own loader, such as Swin, are checked alike).
        same_shape = [k for k in own if k in offered and offered[k].shape == own[k].shape]
        matched = [k for k in same_shape if torch.equal(own[k], offered[k].to(own[k].dtype))]
        not_loaded = [k for k in same_shape if k not in matched]
        mismatched = [k for k in own if k in offered and offered[k].shape != own[k].shape]
        missing = [k for k in own if k not in offered]
        unexpected = [k for k in offered if k not in own]
        rep = dict(key=key, checkpoint=cfg['checkpoint'], matched=matched, missing=missing, unexpected=unexpected,
                   mismatched=mismatched, not_loaded=not_loaded)
        reports.append(rep)
        if not matched:
            raise ValueError(f'{key}.init_cfg: no tensor of {cfg["checkpoint"]!r} fits {type(module).__name__} '
                             f'(prefix={cfg.get("prefix")!r}; file keys start {sorted(offered)[:3]}, module keys '
                             f'start {sorted(own)[:3]})')

        def short(keys: list[str]) -> str:
            return ', '.join(keys[:8]) + (f', ... ({len(keys)} in all)' if len(keys) > 8 else '')

        level = logging.WARNING if (missing or mismatched or not_loaded) else logging.INFO
        msg = f'{key}: loaded {len(matched)}/{len(own)} tensors from {cfg["checkpoint"]}'
        if missing:
            msg += f'; missing in the file (left as initialised): {short(missing)}'
        if mismatched:
            msg += f'; shape mismatch (not loaded): {short(mismatched)}'
        if not_loaded:
            msg += f'; in the file but not loaded: {short(not_loaded)}'
        if unexpected:
            msg += f'; unused from the file: {short(unexpected)}'
        print_log(msg, logger='current', level=level)
    return reports


def init_weights_everywhere(root: BaseModule, init_fn, prefix: str = 'model') -> list[dict]:
    """Run ``init_fn`` (mmengine's ``BaseModule.init_weights`` bound to ``root``) so that it
    reaches every submodule, after checking the ``Pretrained`` files; return the load reports."""
    check_pretrained_files(root, prefix)
    with _reach_everything(root):
        init_fn()
    return report_pretrained(root, prefix)
