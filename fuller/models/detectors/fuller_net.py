"""FULLER's multi-modal multi-task network (BEVFusion-style)."""

import warnings

import torch
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import Tensor, nn

from fuller.calibration.contract import ModalityHook, TaskOutputs
from fuller.registry import MODELS

from ..camera.rig import CameraRig
from ..derive import derive_grids, fill_channels
from ..init import init_weights_everywhere


@MODELS.register_module()
class FullerNet(BaseModel):
    """Camera + LiDAR branches -> fuser -> shared BEV decoder -> task heads.

    The module tree mirrors the config: ``encoders.camera``, ``encoders.lidar``,
    ``fuser``, ``decoder.backbone``/``decoder.neck``, ``heads.det``, ``heads.map``. Any
    encoder or head may be left out (single-modality / single-task variants by config).

    Args:
        encoders: ``dict(camera=..., lidar=...)`` configs (either may be missing).
        fuser: fuser config; required when both encoders are present.
        decoder: ``dict(backbone=..., neck=...)`` (neck optional).
        heads: ``dict(det=..., map=...)`` (either may be missing).
        geometry: the setup's grid, stated once at the top level of a config and handed over
            by :func:`fuller.engine.config.resolve_config`. Every grid key of the branches and
            heads is derived from it (:mod:`fuller.models.derive`); ``None``: the configs
            must state them.
        metainfo: the dataset's ``classes`` and ``map_classes`` (also handed over by
            ``resolve_config``): the detection head's classes (one task group unless
            ``tasks`` is given) and the map head's.
        data_preprocessor: preprocessor config.
        missing_modality: ``'error'`` (default) or ``'zeros'``: at inference, replace an
            absent modality's BEV map with zeros and warn.
        drop_modality: ``None`` (default), ``'camera'`` or ``'lidar'``: at inference, treat that
            sensor as failed: its encoder is not run and its BEV map enters the fuser as zeros
            (the fuser's convolution and BatchNorm still act on the zeros), whatever the inputs
            hold (``tools/test.py --drop-modality``). Needs both encoders and a fuser.
        channels_last: keep the weights of every 2-D convolution in channels-last (NHWC)
            layout, so that oneDNN (CPU) and cuDNN run their convolutions, and hand on their
            outputs, in it without reordering (the demo model's step: 13% faster under bf16 on a
            Xeon with AMX). Parameters keep their shapes and names; only strides differ. In fp32
            on CPU it costs precision: PyTorch's BatchNorm on channels-last inputs computes its
            batch statistics less exactly (1.6e-5 relative against 6e-8, measured), which moved
            the demo model's whole gradient by 0.9%. ``'bf16'`` (the demo model): only when the
            config trains under bf16, whose own rounding (3.9e-3) is far larger;
            :func:`fuller.engine.config.resolve_config` decides it from ``optim_wrapper.amp``
            (left unresolved it means ``False``).
        modality_dropout: ``p`` in [0, 0.5]: in training, each sample's camera BEV map is zeroed
            with probability ``p`` and, exclusively, its LiDAR BEV map with probability ``p``
            (never both; no rescaling, as a failed sensor at test time is not rescaled either):
            the usual remedy for a fused model that leans on one sensor, and the baseline the
            modality calibration is compared with (``configs/ablation/modality_dropout.py``).
            0 (default): off. Needs both encoders and a fuser.
        init_cfg: mmengine init config.
    """

    def __init__(self, encoders: dict, decoder: dict, heads: dict, fuser: dict | None = None,
                 geometry: dict | None = None, metainfo: dict | None = None,
                 data_preprocessor: dict | None = None, missing_modality: str = 'error',
                 drop_modality: str | None = None, channels_last: bool | str = False,
                 modality_dropout: float = 0.0, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(type='MultiModalDataPreprocessor'),
                         init_cfg=init_cfg)
        unknown = set(encoders) - {'camera', 'lidar'}
        if unknown:
            raise KeyError(f'model.encoders has unknown keys {sorted(unknown)}; use "camera" and/or "lidar"')
        unknown = set(heads) - {'det', 'map'}
        if unknown:
            raise KeyError(f'model.heads has unknown keys {sorted(unknown)}; use "det" and/or "map"')
        if missing_modality not in ('error', 'zeros'):
            raise ValueError(f"model.missing_modality must be 'error' or 'zeros', got {missing_modality!r}")
        encoders = {k: v for k, v in encoders.items() if v is not None}
        heads = {k: v for k, v in heads.items() if v is not None}
        fused = set(encoders) == {'camera', 'lidar'} and fuser is not None  # what dropping a sensor needs
        if drop_modality is not None and (drop_modality not in ('camera', 'lidar') or not fused):
            raise ValueError(f'model.drop_modality={drop_modality!r}: must be None, "camera" or "lidar", on a model with '
                             f'camera and LiDAR encoders and a fuser (this one has encoders {sorted(encoders)})')
        if not encoders or not heads:
            raise ValueError('model needs at least one encoder and one head')
        if not 0.0 <= float(modality_dropout) <= 0.5 or (modality_dropout and not fused):
            raise ValueError(f'model.modality_dropout={modality_dropout!r}: must be in [0, 0.5], and non-zero only on a '
                             f'model with camera and LiDAR encoders and a fuser (this one has encoders '
                             f'{sorted(encoders)})')
        if geometry is not None:
            encoders, heads = derive_grids(encoders, heads, geometry, metainfo)
        self.geometry = geometry
        try:
            self.encoders = nn.ModuleDict({k: MODELS.build(v) for k, v in encoders.items()})
        except TypeError as e:
            if geometry is not None:
                raise
            raise TypeError(f'{e}. This FullerNet config has no geometry: state every grid key in it, or build it '
                            'from a config resolved by fuller.engine.read_config / resolve_config, which hands the '
                            'top-level geometry to the model') from e
        fuser, decoder, heads = fill_channels(fuser, decoder, heads,
                                              {k: e.out_channels for k, e in self.encoders.items()})
        self.fuser = MODELS.build(fuser) if fuser is not None else None
        self.decoder = nn.ModuleDict({k: MODELS.build(v) for k, v in decoder.items() if v is not None})
        self.heads = nn.ModuleDict({k: MODELS.build(v) for k, v in heads.items()})
        self.missing_modality = missing_modality
        self.drop_modality = drop_modality
        self.modality_dropout = float(modality_dropout)
        if channels_last not in (True, False, 'bf16'):
            raise ValueError(f"model.channels_last must be True, False or 'bf16', got {channels_last!r}")
        self.channels_last = channels_last is True
        self._grids_checked = False
        self._to_channels_last()

    def _to_channels_last(self) -> None:
        if not self.channels_last:
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)

    def init_weights(self) -> None:
        """Initialise every submodule (also those inside ``ModuleDict``\\s and plain wrappers).

        ``Pretrained`` ``init_cfg``\\s anywhere in the tree must name existing local files;
        each one's load is reported (see :mod:`fuller.models.init`).
        """
        init_weights_everywhere(self, super().init_weights)
        self._to_channels_last()  # an init that assigned new weight tensors

    def load_units(self) -> list[str]:
        """The parts a partial load takes whole or not at all: each encoder's parts (backbone,
        neck, view transform; voxelization and sparse encoder), the fuser, the decoder's
        backbone and neck, each head."""
        units = [f'encoders.{k}' for k in self.encoders]
        units += [f'encoders.{k}.{c}' for k, e in self.encoders.items() for c, _ in e.named_children()]
        units += ['fuser'] if self.fuser is not None else []
        return units + [f'decoder.{k}' for k in self.decoder] + [f'heads.{k}' for k in self.heads]

    # ------------------------------------------------------------------ features
    def extract_bev(self, inputs: dict, samples: list, aux: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Modality BEV maps: ``{'camera': [B, C, H, W], 'lidar': [B, C', H, W]}``; ``aux``
        receives the encoders' auxiliary losses (``'camera.loss_depth'``)."""
        bev = {}
        drop = None if self.training else self.drop_modality
        if drop is not None:
            inputs = {k: v for k, v in inputs.items() if k != {'camera': 'imgs', 'lidar': 'points'}[drop]}
        if 'camera' in self.encoders and 'imgs' in inputs:
            cams = CameraRig.from_metainfo([s.metainfo for s in samples], inputs['imgs'].device)
            cam_aux = {} if aux is not None else None
            bev['camera'] = self.encoders['camera'](inputs['imgs'], cams, inputs.get('points'), cam_aux)
            if cam_aux:
                aux.update({f'camera.{k}': v for k, v in cam_aux.items()})
        if 'lidar' in self.encoders and 'points' in inputs:
            bev['lidar'] = self.encoders['lidar'](inputs['points'])
        missing = [k for k in self.encoders if k not in bev]
        if missing:
            if self.training or (self.missing_modality == 'error' and missing != [drop]) or not bev:
                raise KeyError(f'input modality {missing} missing (inputs have {sorted(inputs)}); set '
                               f"model.missing_modality='zeros' to run inference without it")
            ref = next(iter(bev.values()))
            for k in missing:
                if k != drop:
                    warnings.warn(f'{k} input missing: using zeros for its BEV features')
                enc = self.encoders[k]
                bev[k] = ref.new_zeros(ref.shape[0], enc.out_channels, *ref.shape[2:])
        return bev

    def extract_feat(self, inputs: dict, samples: list, modality: ModalityHook | None = None,
                     aux: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Shared BEV feature ``F`` [B, C, H, W] and the modality BEV maps.

        ``modality``: applied to the (camera, LiDAR) BEV pair before the fuser: the calibrated
        step's modality stage (:class:`fuller.calibration.ModalityStage`). ``aux``: receives the
        encoders' auxiliary losses (training only).
        """
        bev = self.extract_bev(inputs, samples, aux)
        if not self._grids_checked:
            self._check_grids(bev)
        if self.fuser is not None:
            cam, lidar = bev['camera'], bev['lidar']
            if self.training and self.modality_dropout > 0:
                cam, lidar = self._modality_dropout(cam, lidar)
            if modality is not None:
                cam, lidar = modality(cam, lidar)
            x = self.fuser([cam, lidar])
        else:
            x = next(iter(bev.values()))
        x = self.decoder['backbone'](x)
        if 'neck' in self.decoder:
            x = self.decoder['neck'](x)
        if isinstance(x, (list, tuple)):
            x = x[0] if len(x) == 1 else torch.cat(list(x), 1)
        if not self._grids_checked:
            self._check_grids(bev, x)
        return x, bev

    def _modality_dropout(self, cam: Tensor, lidar: Tensor) -> tuple[Tensor, Tensor]:
        """Zero the camera map of a sample with probability p, else its LiDAR map with
        probability p (one uniform draw per sample from torch's generator: seeded runs repeat)."""
        u = torch.rand(cam.shape[0], device=cam.device)
        p = self.modality_dropout
        keep_cam = (u >= p).to(cam.dtype).view(-1, 1, 1, 1)
        keep_lidar = ((u < p) | (u >= 2 * p)).to(lidar.dtype).view(-1, 1, 1, 1)
        return cam * keep_cam, lidar * keep_lidar

    def _check_grids(self, bev: dict[str, Tensor], shared: Tensor | None = None) -> None:
        """On the first batch: the modality BEV grids agree, and the shared feature has the
        size each head assumes; otherwise raise naming the config keys (before any step)."""
        shapes = {k: tuple(v.shape[-2:]) for k, v in bev.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f'BEV grids of the encoders differ: {shapes}; make model.encoders.camera.vtransform '
                             f'(xbound/ybound, downsample) and model.encoders.lidar (voxel_size, sparse_shape) '
                             f'produce the same H x W')
        if shared is None:
            return
        got = tuple(shared.shape[-2:])
        for name, head in self.heads.items():
            exp = head.expected_input_shape() if hasattr(head, 'expected_input_shape') else None
            if exp is not None and tuple(exp[0]) != got:
                raise ValueError(f'heads.{name} expects a {exp[0][0]}x{exp[0][1]} BEV feature ({exp[1]}) but the '
                                 f'decoder produces {got[0]}x{got[1]} (from encoder grids {shapes}); fix one of them')
        self._grids_checked = True

    # ------------------------------------------------------------------ modes
    def task_losses(self, feats: Tensor, samples: list) -> dict[str, dict[str, Tensor]]:
        """Per-task loss groups: ``{'det': {'loss_heatmap': ..}, 'map': {'loss_focal': ..}}``."""
        return {name: head.loss(feats, samples) for name, head in self.heads.items()}

    def loss(self, inputs: dict, samples: list) -> dict[str, Tensor]:
        """The task losses (``'det.loss_heatmap'``, ``'map.loss_focal'``, ...) and the encoders'
        auxiliary losses (``'camera.loss_depth'`` with depth supervision)."""
        aux: dict[str, Tensor] = {}
        feats, _ = self.extract_feat(inputs, samples, aux=aux)
        losses = {f'{t}.{k}': v for t, group in self.task_losses(feats, samples).items() for k, v in group.items()}
        return {**losses, **aux}

    def predict(self, inputs: dict, samples: list) -> list:
        feats, _ = self.extract_feat(inputs, samples)
        if 'det' in self.heads:
            for s, r in zip(samples, self.heads['det'].predict(feats, samples)):
                s.pred_instances_3d = r
        if 'map' in self.heads:
            for s, m in zip(samples, self.heads['map'].predict(feats, samples)):
                s.pred_map = m
        return samples

    def _forward(self, inputs: dict, samples: list | None = None) -> dict[str, Tensor]:
        feats, bev = self.extract_feat(inputs, samples or [])
        out = {'shared': feats, **{f'bev_{k}': v for k, v in bev.items()}}
        if 'map' in self.heads:
            out['map_logits'] = self.heads['map'](feats)
        return out

    def forward(self, inputs: dict, data_samples: list | None = None, mode: str = 'tensor',
                modality: ModalityHook | None = None):
        """``mode``: ``'loss'`` (dict of losses), ``'predict'`` (samples with predictions),
        ``'tensor'`` (features and raw outputs) or ``'tasks'``: the per-task losses computed on
        a detached leaf copy of the shared feature, for gradient calibration (:meth:`task_forward`;
        ``modality`` is applied to the modality BEV pair there)."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        if mode == 'tasks':
            return self.task_forward(inputs, data_samples, modality)
        raise ValueError(f"invalid mode {mode!r}; use 'loss', 'predict', 'tensor' or 'tasks'")

    def task_forward(self, inputs: dict, samples: list, modality: ModalityHook | None = None) -> TaskOutputs:
        """``(task loss groups, shared feature F, leaf F', auxiliary losses)``: the heads run on
        ``F'``, a detached leaf copy of ``F``, so each task's gradient at the shared feature costs a
        backward through its head only (the contract of :class:`fuller.calibration.CalibratedModel`);
        the encoders' auxiliary losses (depth supervision) act on the branches directly."""
        aux: dict[str, Tensor] = {}
        shared, _ = self.extract_feat(inputs, samples, modality, aux)
        leaf = shared.detach().requires_grad_(True)
        return TaskOutputs(self.task_losses(leaf, samples), shared, leaf, aux)

    def task_parameters(self):
        """The parameters downstream of the shared feature (the heads'): the only ones the task
        losses computed on its detached copy can reach."""
        return self.heads.parameters()

    # ------------------------------------------------------------------ training
    def train_step(self, data: dict, optim_wrapper: OptimWrapper) -> dict:
        """One training step, owned by the optimizer wrapper: the calibrated step with a
        ``CalibratedOptimWrapper``, summed losses with a ``GuardedOptimWrapper`` (the naive
        baseline); a plain mmengine wrapper gets mmengine's summed-loss step."""
        if hasattr(optim_wrapper, 'train_step'):
            return optim_wrapper.train_step(self, data)
        return super().train_step(data, optim_wrapper)
