"""BEVFusion's detection head: TransFusion, on FULLER's head interface.

The head as BEVFusion-MIT builds it (``mmdet3d/models/heads/bbox/transfusion.py``, configured by
``configs/nuscenes/det/transfusion/default.yaml``):

1. **Query initialisation from heatmap peaks.** A shared 3x3 conv and a dense class heatmap
   (conv-BN-ReLU, conv) run on the BEV feature; the heatmap's local maxima (3x3 max-pool, none
   for the pedestrian and traffic-cone classes on nuScenes, and none on the border cells, as
   BEVFusion) give the ``num_proposals`` best (cell, class) pairs over all classes. Each query is
   the feature at its cell plus a learned encoding of its class (a 1x1 conv of the one-hot).
2. **Transformer decoder layer(s)** (post-norm): self-attention among the queries, then
   cross-attention from the queries to every BEV cell, then a feed-forward block; the positions
   (BEV cell coordinates, 2 numbers) enter through learned embeddings (conv-BN-ReLU-conv) added to
   queries and keys -- and to the values, as BEVFusion does.
3. **Prediction branches** per layer (mmdet3d's ``SeparateHead`` on 1x1 Conv1d): ``center``
   (offset in cells, added to the query's position), ``height``, ``dim`` (log), ``rot``
   (sin, cos), ``vel`` and the class ``heatmap``. A layer's centres are the next layer's positions.
4. **Training**: each layer's queries are matched one-to-one to the ground truth by
   :class:`~fuller.models.heads.transfusion_assign.HungarianAssigner3D`; the classification is a
   sigmoid focal loss over all queries (unmatched ones are background), the boxes an L1 loss on the
   matched ones (both averaged over the matches), and the dense heatmap a Gaussian focal loss
   against CenterPoint-style Gaussians. **Decoding**: a query's score is its class probability
   times the heatmap score it started from; no NMS (BEVFusion's nuScenes setting).

Layout: FULLER's BEV maps are ``[B, C, Y, X]`` (BEVFusion-MIT's are ``[B, C, X, Y]``), so the
flattened cell index here is ``y * X + x``; positions and centres are ``(x, y)`` in both, so
everything after the two 3x3 convs is layout-free and BEVFusion's weights of those convs need
only ``W.transpose(-1, -2)``. Parameter names are BEVFusion-MIT's.

Initialisation: the decoder's matrices Xavier-uniform (BEVFusion); the last conv of the dense
heatmap and of every heatmap branch start at the CenterNet prior ``heatmap_init_bias`` (-2.19:
every class at probability 0.1), where BEVFusion-MIT leaves PyTorch's default bias -- with it the
first focal losses are 20-50x larger (``None`` keeps PyTorch's default).
"""

import copy

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet3d.models.utils import draw_heatmap_gaussian, gaussian_radius
from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from mmengine.structures import InstanceData
from torch import Tensor, nn

from fuller.registry import MODELS, TASK_UTILS

# The classes BEVFusion's peak search does not suppress, per test_cfg.dataset: by name, and by
# label index in BEVFusion's class order (used when the head is not given its class names).
PEAK_FREE_NAMES = {'nuScenes': ('pedestrian', 'traffic_cone'), 'Waymo': ('Pedestrian', 'Cyclist')}
PEAK_FREE_INDEX = {'nuScenes': (8, 9), 'Waymo': (1, 2)}


# BEVFusion's losses (configs/nuscenes/det/transfusion/default.yaml: loss_cls, loss_heatmap, loss_bbox).
LOSS_DEFAULTS = dict(
    loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, reduction='mean', loss_weight=1.0),
    loss_heatmap=dict(type='mmdet.GaussianFocalLoss', reduction='mean', loss_weight=1.0),
    loss_bbox=dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25))
# BEVFusion's target settings (configs/nuscenes/det/transfusion/default.yaml, train_cfg).
TRAIN_DEFAULTS = dict(gaussian_overlap=0.1, min_radius=2, pos_weight=-1,
                      code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2])


class PositionEmbeddingLearned(nn.Module):
    """``[B, P, 2]`` positions -> ``[B, P, C]`` embeddings: BEVFusion's 1x1 conv-BN-ReLU-conv over
    the positions, computed as matrix products on the ``[B, P, *]`` layout (its parameters and
    BatchNorm statistics are those of the ``Conv1d`` stack; 3x faster on a CPU than ``Conv1d``)."""

    def __init__(self, input_channel: int, num_pos_feats: int) -> None:
        super().__init__()
        self.position_embedding_head = nn.Sequential(
            nn.Conv1d(input_channel, num_pos_feats, kernel_size=1), nn.BatchNorm1d(num_pos_feats),
            nn.ReLU(inplace=True), nn.Conv1d(num_pos_feats, num_pos_feats, kernel_size=1))

    def forward(self, pos: Tensor) -> Tensor:
        conv0, bn, _, conv1 = self.position_embedding_head
        x = F.linear(pos.to(conv0.weight.dtype), conv0.weight.squeeze(-1), conv0.bias)
        x = F.relu(bn(x.flatten(0, 1)).view_as(x))  # statistics over batch and positions, as on [B, C, P]
        return F.linear(x, conv1.weight.squeeze(-1), conv1.bias)


class TransFusionDecoderLayer(nn.Module):
    """BEVFusion's post-norm decoder layer; queries and keys are ``[B, C, N]``."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, activation: str) -> None:
        super().__init__()
        acts = {'relu': F.relu, 'gelu': F.gelu}
        if activation not in acts:
            raise ValueError(f'TransFusionHead activation must be one of {sorted(acts)}, got {activation!r}')
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.activation = acts[activation]
        self.self_posembed = PositionEmbeddingLearned(2, d_model)
        self.cross_posembed = PositionEmbeddingLearned(2, d_model)

    def forward(self, query: Tensor, key: Tensor, query_pos: Tensor, key_pos: Tensor) -> Tensor:
        q_embed = self.self_posembed(query_pos)  # [B, P, C]
        k_embed = self.cross_posembed(key_pos)  # [B, N, C]
        q = query.transpose(1, 2)
        x = q + q_embed
        q = self.norm1(q + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))
        k = key.transpose(1, 2) + k_embed
        q = self.norm2(q + self.dropout2(self.multihead_attn(q + q_embed, k, k, need_weights=False)[0]))
        q = self.norm3(q + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(q))))))
        return q.transpose(1, 2)


def _peak_free(dataset: str | None, class_names, num_classes: int) -> tuple[int, ...]:
    if class_names is None:
        return tuple(c for c in PEAK_FREE_INDEX.get(dataset, ()) if c < num_classes)
    if len(class_names) != num_classes:
        raise ValueError(f'model.heads.det.class_names has {len(class_names)} names for num_classes={num_classes}')
    return tuple(list(class_names).index(n) for n in PEAK_FREE_NAMES.get(dataset, ()) if n in class_names)


def _bev_positions(nx: int, ny: int) -> Tensor:
    """``[1, ny * nx, 2]`` cell centres ``(x + 0.5, y + 0.5)`` in the ``[Y, X]`` flattening."""
    y, x = torch.meshgrid(torch.arange(ny, dtype=torch.float32), torch.arange(nx, dtype=torch.float32),
                          indexing='ij')
    return torch.stack([x + 0.5, y + 0.5], dim=-1).view(1, -1, 2)


@MODELS.register_module()
class TransFusionHead(BaseModule):
    """Args (BEVFusion's names; defaults from its nuScenes TransFusion config):
        in_channels: channels of the shared BEV feature.
        num_classes: detection classes (sigmoid classification: no background class).
        num_proposals: queries per sample.
        auxiliary: supervise every decoder layer (else only the last).
        hidden_channel: query / BEV feature width in the decoder.
        num_decoder_layers, num_heads, ffn_channel, dropout, activation: the decoder.
        nms_kernel_size: max-pool window of the heatmap peak search.
        bn_momentum: momentum of every BatchNorm in the head.
        common_heads: the regression branches ``name: (outputs, convs)``.
        num_heatmap_convs: convs of the class branch.
        conv_cfg, norm_cfg, bias: of the prediction branches (``Conv1d``, ``BN1d``).
        loss_cls, loss_bbox, loss_heatmap: loss configs (``loss_cls`` must be sigmoid;
            BEVFusion's, ``LOSS_DEFAULTS``, when not given).
        train_cfg: ``grid_size``, ``voxel_size``, ``point_cloud_range``, ``out_size_factor``,
            ``assigner`` and the target settings ``gaussian_overlap``, ``min_radius``,
            ``pos_weight``, ``code_weights`` (BEVFusion's unless given: ``TRAIN_DEFAULTS``).
        test_cfg: ``grid_size``, ``out_size_factor``, ``dataset`` (which classes skip the peak
            suppression), ``nms_type`` (``None`` only: BEVFusion's nuScenes setting).
        bbox_coder: a :class:`TransFusionBBoxCoder` config.
        heatmap_init_bias: bias of the heatmaps' last convs at initialisation (``None``: PyTorch's).
        class_names: the label order (filled from the dataset's classes), so that
            ``test_cfg.dataset``'s unsuppressed classes are found by name; without it, by
            BEVFusion's label indices.
    """

    def __init__(self, in_channels: int, num_classes: int, num_proposals: int = 200, auxiliary: bool = True,
                 hidden_channel: int = 128, num_decoder_layers: int = 1, num_heads: int = 8,
                 nms_kernel_size: int = 3, ffn_channel: int = 256, dropout: float = 0.1, bn_momentum: float = 0.1,
                 activation: str = 'relu', common_heads: dict | None = None, num_heatmap_convs: int = 2,
                 conv_cfg: dict | None = None, norm_cfg: dict | None = None, bias='auto',
                 loss_cls: dict | None = None, loss_heatmap: dict | None = None, loss_bbox: dict | None = None,
                 train_cfg: dict | None = None, test_cfg: dict | None = None, bbox_coder: dict | None = None,
                 heatmap_init_bias: float | None = -2.19, class_names: list[str] | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        conv_cfg, norm_cfg = conv_cfg or dict(type='Conv1d'), norm_cfg or dict(type='BN1d')
        loss_cls = loss_cls or LOSS_DEFAULTS['loss_cls']
        loss_heatmap, loss_bbox = loss_heatmap or LOSS_DEFAULTS['loss_heatmap'], loss_bbox or LOSS_DEFAULTS['loss_bbox']
        if not loss_cls.get('use_sigmoid', False):
            raise ValueError('TransFusionHead supports a sigmoid classification loss only '
                             '(model.heads.det.loss_cls.use_sigmoid=True, as BEVFusion)')
        if nms_kernel_size < 1 or nms_kernel_size % 2 == 0:
            raise ValueError(f'model.heads.det.nms_kernel_size must be odd and >= 1, got {nms_kernel_size}')
        self.test_cfg = dict(test_cfg or {})
        self.train_cfg = {**TRAIN_DEFAULTS, **(train_cfg or {})}
        if self.test_cfg.get('nms_type') is not None:
            raise ValueError(f"model.heads.det.test_cfg.nms_type={self.test_cfg['nms_type']!r}: TransFusionHead "
                             f"decodes without NMS (BEVFusion's nuScenes setting); set it to None")
        grid_cfg = self.test_cfg if 'grid_size' in self.test_cfg else self.train_cfg
        if 'grid_size' not in grid_cfg or 'out_size_factor' not in grid_cfg:
            raise KeyError('model.heads.det.test_cfg (or train_cfg) needs grid_size and out_size_factor '
                           '(derived from the config\'s geometry)')
        self.num_classes = num_classes
        self.num_proposals = num_proposals
        self.auxiliary = auxiliary
        self.num_decoder_layers = num_decoder_layers
        self.nms_kernel_size = nms_kernel_size
        self.bn_momentum = bn_momentum
        self.heatmap_init_bias = heatmap_init_bias
        self.peak_free_classes = _peak_free(self.test_cfg.get('dataset'), class_names, num_classes)

        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.assigner = TASK_UTILS.build(self.train_cfg['assigner']) if 'assigner' in self.train_cfg else None

        self.shared_conv = nn.Conv2d(in_channels, hidden_channel, 3, padding=1, bias=True if bias == 'auto' else bias)
        self.heatmap_head = nn.Sequential(
            ConvModule(hidden_channel, hidden_channel, 3, padding=1, bias=bias, conv_cfg=dict(type='Conv2d'),
                       norm_cfg=dict(type='BN2d')),
            nn.Conv2d(hidden_channel, num_classes, 3, padding=1, bias=True))
        self.class_encoding = nn.Conv1d(num_classes, hidden_channel, 1)
        self.decoder = nn.ModuleList(
            TransFusionDecoderLayer(hidden_channel, num_heads, ffn_channel, dropout, activation)
            for _ in range(num_decoder_layers))
        branches = copy.deepcopy(dict(common_heads or dict(center=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2),
                                                           vel=(2, 2))))
        branches['heatmap'] = (num_classes, num_heatmap_convs)
        self.prediction_heads = nn.ModuleList(
            MODELS.build(dict(type='mmdet3d.SeparateHead', in_channels=hidden_channel, heads=branches,
                              head_conv=64, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                              bias=bias, init_bias=-2.19 if heatmap_init_bias is None else heatmap_init_bias))
            for _ in range(num_decoder_layers))
        nx = grid_cfg['grid_size'][0] // grid_cfg['out_size_factor']
        ny = grid_cfg['grid_size'][1] // grid_cfg['out_size_factor']
        self.feature_size = (ny, nx)
        self.register_buffer('bev_pos', _bev_positions(nx, ny), persistent=False)
        self._set_bn_momentum()

    # ------------------------------------------------------------------ set-up
    def _set_bn_momentum(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.momentum = self.bn_momentum

    def init_weights(self) -> None:
        super().init_weights()
        for head in self.prediction_heads:  # inside a ModuleList: not reached by mmengine's cascade
            if not getattr(head, 'is_init', False):
                head.init_weights()
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        last = self.heatmap_head[-1]
        if self.heatmap_init_bias is not None:
            nn.init.constant_(last.bias, self.heatmap_init_bias)
        else:  # PyTorch's default bias, also in the prediction branches (BEVFusion-MIT's)
            for head in self.prediction_heads:
                head.heatmap[-1].reset_parameters()
        for m in (last, *(h.heatmap[-1] for h in self.prediction_heads)):
            if hasattr(m, '_params_init_info'):
                update_init_info(m, init_info=f'heatmap prior bias {self.heatmap_init_bias}')
        self._set_bn_momentum()

    def expected_input_shape(self) -> tuple[tuple[int, int], str]:
        """(H, W) of the BEV feature the positions and targets assume, and the config key."""
        return self.feature_size, 'model.heads.det.test_cfg.grid_size / out_size_factor'

    # ------------------------------------------------------------------ forward
    def _peaks(self, dense_heatmap: Tensor) -> Tensor:
        """Sigmoid heatmap with everything but the local maxima zeroed: ``[B, K, H * W]``."""
        heat = dense_heatmap.detach().float().sigmoid()
        k = self.nms_kernel_size
        if k > 1:
            p = k // 2
            local_max = torch.zeros_like(heat)  # border cells stay 0: never peaks (BEVFusion)
            local_max[:, :, p:-p, p:-p] = F.max_pool2d(heat, kernel_size=k, stride=1, padding=0)
            for c in self.peak_free_classes:
                local_max[:, c] = heat[:, c]
            heat = heat * (heat == local_max)
        return heat.flatten(2)

    def forward(self, feats: Tensor) -> dict[str, Tensor]:
        """Raw outputs: the branches ``[B, k, L * P]`` (layers concatenated when ``auxiliary``),
        ``dense_heatmap`` ``[B, K, H, W]``, ``query_heatmap_score`` ``[B, K, P]`` and
        ``query_labels`` ``[B, P]``."""
        b = feats.shape[0]
        if tuple(feats.shape[-2:]) != self.feature_size:
            raise ValueError(f'TransFusionHead expects a {self.feature_size[0]}x{self.feature_size[1]} BEV feature '
                             f'(model.heads.det.test_cfg.grid_size / out_size_factor), got {tuple(feats.shape[-2:])}')
        x = self.shared_conv(feats)
        flat = x.flatten(2)  # [B, C, H * W]
        bev_pos = self.bev_pos.expand(b, -1, -1).to(flat.dtype)
        dense_heatmap = self.heatmap_head(x)
        heat = self._peaks(dense_heatmap)
        top = heat.reshape(b, -1).topk(self.num_proposals, dim=-1).indices
        labels = torch.div(top, heat.shape[-1], rounding_mode='floor')
        cells = top % heat.shape[-1]
        query = flat.gather(2, cells[:, None, :].expand(-1, flat.shape[1], -1))
        query = query + self.class_encoding(F.one_hot(labels, self.num_classes).permute(0, 2, 1).to(query.dtype))
        query_pos = bev_pos.gather(1, cells[:, :, None].expand(-1, -1, 2))
        layers = []
        for decoder, predict in zip(self.decoder, self.prediction_heads):
            query = decoder(query, flat, query_pos, bev_pos)
            out = predict(query)
            out['center'] = out['center'] + query_pos.permute(0, 2, 1)
            layers.append(out)
            query_pos = out['center'].detach().permute(0, 2, 1)
        if not self.auxiliary:
            layers = layers[-1:]
        res = {k: torch.cat([lay[k] for lay in layers], dim=-1) for k in layers[0]}
        res['dense_heatmap'] = dense_heatmap
        res['query_heatmap_score'] = heat.gather(2, cells[:, None, :].expand(-1, self.num_classes, -1))
        res['query_labels'] = labels
        return res

    # ------------------------------------------------------------------ training
    def _heatmap_target(self, boxes: LiDARInstance3DBoxes, labels: Tensor, device) -> Tensor:
        """CenterPoint-style Gaussians ``[K, H, W]`` at the boxes' BEV centres."""
        cfg = self.train_cfg
        ny, nx = self.feature_size
        heatmap = torch.zeros(self.num_classes, ny, nx, device=device)
        factor, vs, pc = cfg['out_size_factor'], cfg['voxel_size'], cfg['point_cloud_range']
        centers = boxes.gravity_center.cpu()
        sizes = boxes.tensor[:, 3:5].cpu()
        for i in range(len(boxes)):
            w = float(sizes[i, 0]) / vs[0] / factor
            length = float(sizes[i, 1]) / vs[1] / factor
            if w <= 0 or length <= 0:
                continue
            radius = gaussian_radius((torch.tensor(length), torch.tensor(w)), min_overlap=cfg['gaussian_overlap'])
            radius = max(cfg['min_radius'], int(radius))
            cx = (float(centers[i, 0]) - pc[0]) / vs[0] / factor
            cy = (float(centers[i, 1]) - pc[1]) / vs[1] / factor
            ix, iy = int(cx), int(cy)  # truncation, as BEVFusion
            if 0 <= ix < nx and 0 <= iy < ny:
                draw_heatmap_gaussian(heatmap[int(labels[i])], torch.tensor([ix, iy], dtype=torch.int32), radius)
        return heatmap

    def _layer_slice(self, layer: int) -> slice:
        return slice(layer * self.num_proposals, (layer + 1) * self.num_proposals)

    @torch.no_grad()
    def _targets_single(self, preds: dict[str, Tensor], i: int, gt: InstanceData) -> dict:
        """Targets of sample ``i``: labels/weights ``[L * P]``, boxes/weights ``[L * P, code]``,
        matched IoUs, and the dense heatmap."""
        branch = {k: preds[k][i:i + 1].float() for k in ('heatmap', 'rot', 'dim', 'center', 'height')}
        vel = preds['vel'][i:i + 1].float() if 'vel' in preds else None
        decoded = self.bbox_coder.decode(branch['heatmap'], branch['rot'], branch['dim'], branch['center'],
                                         branch['height'], vel)[0]['bboxes']
        n = decoded.shape[0]
        device = decoded.device
        gt_boxes = gt.bboxes_3d.to(device)
        gt_tensor, gt_labels = gt_boxes.tensor.float(), gt.labels_3d.to(device).long()
        gt_index = torch.full((n,), -1, dtype=torch.long, device=device)
        ious = torch.zeros(n, device=device)
        for layer in range(n // self.num_proposals):
            s = self._layer_slice(layer)
            gt_index[s], ious[s] = self.assigner.assign(decoded[s], gt_tensor, gt_labels, branch['heatmap'][0, :, s].T,
                                                        self.train_cfg['point_cloud_range'])
        pos = gt_index >= 0
        code = self.bbox_coder.code_size
        labels = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        label_weights = torch.ones(n, device=device)
        box_targets = torch.zeros(n, code, device=device)
        box_weights = torch.zeros(n, code, device=device)
        if pos.any():
            box_targets[pos] = self.bbox_coder.encode(gt_tensor[gt_index[pos]])
            box_weights[pos] = 1.0
            labels[pos] = gt_labels[gt_index[pos]]
            pos_weight = self.train_cfg.get('pos_weight', -1)
            if pos_weight > 0:
                label_weights[pos] = pos_weight
        return dict(labels=labels, label_weights=label_weights, box_targets=box_targets, box_weights=box_weights,
                    num_pos=int(pos.sum()), iou_sum=float(ious[pos].sum()),
                    heatmap=self._heatmap_target(gt_boxes, gt_labels, device))

    def loss(self, feats: Tensor, samples: list[Det3DDataSample]) -> dict[str, Tensor]:
        if self.assigner is None:
            raise KeyError('model.heads.det.train_cfg.assigner is not set: TransFusionHead cannot be trained')
        preds = self(feats)
        per = [self._targets_single(preds, i, s.gt_instances_3d) for i, s in enumerate(samples)]
        t = {k: torch.stack([p[k] for p in per]) for k in ('labels', 'label_weights', 'box_targets', 'box_weights',
                                                            'heatmap')}
        num_pos = sum(p['num_pos'] for p in per)
        avg = max(num_pos, 1)
        dense = preds['dense_heatmap'].float().sigmoid().clamp(1e-4, 1 - 1e-4)
        losses = {'loss_heatmap': self.loss_heatmap(dense, t['heatmap'],
                                                    avg_factor=max(t['heatmap'].eq(1).float().sum().item(), 1))}
        code_weights = t['box_weights'].new_tensor(self.train_cfg.get('code_weights', [1.0] * self.bbox_coder.code_size))
        names = [k for k in ('center', 'height', 'dim', 'rot', 'vel') if k in preds]
        num_layers = preds['heatmap'].shape[-1] // self.num_proposals
        for layer in range(num_layers):
            s = self._layer_slice(layer)
            prefix = 'layer_-1' if layer == num_layers - 1 else f'layer_{layer}'
            cls = preds['heatmap'][..., s].float().permute(0, 2, 1).reshape(-1, self.num_classes)
            losses[f'{prefix}_loss_cls'] = self.loss_cls(cls, t['labels'][:, s].reshape(-1),
                                                          t['label_weights'][:, s].reshape(-1), avg_factor=avg)
            box = torch.cat([preds[k][..., s].float() for k in names], dim=1).permute(0, 2, 1)
            losses[f'{prefix}_loss_bbox'] = self.loss_bbox(box, t['box_targets'][:, s],
                                                           t['box_weights'][:, s] * code_weights, avg_factor=avg)
        losses['matched_ious'] = feats.new_tensor(sum(p['iou_sum'] for p in per) / avg, dtype=torch.float32)
        return losses

    # ------------------------------------------------------------------ inference
    def predict(self, feats: Tensor, samples: list[Det3DDataSample]) -> list[InstanceData]:
        preds = self(feats)
        s = slice(-self.num_proposals, None)
        one_hot = F.one_hot(preds['query_labels'], self.num_classes).permute(0, 2, 1)
        score = preds['heatmap'][..., s].float().sigmoid() * preds['query_heatmap_score'] * one_hot
        vel = preds['vel'][..., s].float() if 'vel' in preds else None
        decoded = self.bbox_coder.decode(score, preds['rot'][..., s].float(), preds['dim'][..., s].float(),
                                         preds['center'][..., s].float(), preds['height'][..., s].float(), vel,
                                         filter=True)
        out = []
        for d in decoded:
            res = InstanceData()
            res.bboxes_3d = LiDARInstance3DBoxes(d['bboxes'], box_dim=d['bboxes'].shape[-1])
            res.scores_3d = d['scores']
            res.labels_3d = d['labels']
            out.append(res)
        return out
