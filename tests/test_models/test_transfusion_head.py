"""TransFusionHead, BEVFusion's detection head: its parameters under BEVFusion-MIT's names, its
BEV layout, its box coding, its Hungarian assignment, and that it learns.

BEVFusion-MIT's head is ``mmdet3d/models/heads/bbox/transfusion.py`` (``TransFusionHead``), its
decoder layer and position embedding ``mmdet3d/models/utils/transformer.py``
(``TransformerDecoderLayer``, ``PositionEmbeddingLearned``, ``MultiheadAttention`` with
``in_proj_weight``/``in_proj_bias``/``out_proj``, ``FFN``), configured by
``configs/nuscenes/det/transfusion/default.yaml``.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import fuller.models  # noqa: F401
from fuller.registry import MODELS, TASK_UTILS

PC = [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]
VS = [0.4, 0.4, 8.0]
FACTOR = 4  # 128 voxels / 4 = 32 x 32 BEV cells of 1.6 m
CLASSES = ['car', 'pedestrian', 'barrier']


def _head(**kw):
    init_default_scope('fuller')
    grid = [128, 128, 1]
    cfg = dict(
        type='TransFusionHead', in_channels=len(CLASSES) + 4, num_classes=len(CLASSES), class_names=CLASSES,
        num_proposals=40, hidden_channel=64, ffn_channel=128,
        train_cfg=dict(dataset='nuScenes', point_cloud_range=PC, grid_size=grid, voxel_size=VS,
                       out_size_factor=FACTOR, assigner=dict(type='HungarianAssigner3D')),
        test_cfg=dict(dataset='nuScenes', grid_size=grid, out_size_factor=FACTOR, nms_type=None),
        bbox_coder=dict(type='TransFusionBBoxCoder', pc_range=PC[:2], voxel_size=VS[:2], out_size_factor=FACTOR,
                        post_center_range=[-30, -30, -10, 30, 30, 10], score_threshold=0.0, code_size=10))
    cfg.update(kw)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def test_state_dict_is_bevfusion_mits():
    """Every tensor of BEVFusion-MIT's nuScenes TransFusion head, by name and shape, and no other
    (in_channels 512, hidden 128, ffn 256, 10 classes, one decoder layer, FFN head_conv 64)."""
    head = _head(in_channels=512, num_classes=10, class_names=None, hidden_channel=128, ffn_channel=256,
                 num_proposals=200)
    C, K, H = 128, 10, 64
    bn = lambda p, n: {f'{p}.weight': (n,), f'{p}.bias': (n,), f'{p}.running_mean': (n,),  # noqa: E731
                       f'{p}.running_var': (n,), f'{p}.num_batches_tracked': ()}
    want = {'shared_conv.weight': (C, 512, 3, 3), 'shared_conv.bias': (C,),
            'heatmap_head.0.conv.weight': (C, C, 3, 3), **bn('heatmap_head.0.bn', C),
            'heatmap_head.1.weight': (K, C, 3, 3), 'heatmap_head.1.bias': (K,),
            'class_encoding.weight': (C, K, 1), 'class_encoding.bias': (C,)}
    d = 'decoder.0.'
    for attn in ('self_attn', 'multihead_attn'):
        want.update({f'{d}{attn}.in_proj_weight': (3 * C, C), f'{d}{attn}.in_proj_bias': (3 * C,),
                     f'{d}{attn}.out_proj.weight': (C, C), f'{d}{attn}.out_proj.bias': (C,)})
    want.update({f'{d}linear1.weight': (256, C), f'{d}linear1.bias': (256,), f'{d}linear2.weight': (C, 256),
                 f'{d}linear2.bias': (C,)})
    for i in (1, 2, 3):
        want.update({f'{d}norm{i}.weight': (C,), f'{d}norm{i}.bias': (C,)})
    for pe in ('self_posembed', 'cross_posembed'):
        p = f'{d}{pe}.position_embedding_head'
        want.update({f'{p}.0.weight': (C, 2, 1), f'{p}.0.bias': (C,), **bn(f'{p}.1', C), f'{p}.3.weight': (C, C, 1),
                     f'{p}.3.bias': (C,)})
    for branch, n in dict(center=2, height=1, dim=3, rot=2, vel=2, heatmap=K).items():
        p = f'prediction_heads.0.{branch}'
        want.update({f'{p}.0.conv.weight': (H, C, 1), **bn(f'{p}.0.bn', H), f'{p}.1.weight': (n, H, 1),
                     f'{p}.1.bias': (n,)})
    got = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert got == want
    # BEVFusion's buffers that are not state here: its bev_pos is a plain attribute, so is ours
    assert 'bev_pos' not in got


def test_position_embedding_is_the_conv1d_stack():
    """The matrix-product form equals BEVFusion's Conv1d-BN-ReLU-Conv1d on [B, 2, P], in training
    (batch statistics) and in evaluation (running statistics)."""
    pe = _head().decoder[0].cross_posembed
    pos = torch.rand(2, 300, 2) * 32
    for mode in (True, False):
        pe.train(mode)
        ref = pe.position_embedding_head(pos.transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(pe(pos), ref, atol=1e-5)


def test_decoder_layer_adds_positions_to_values_as_bevfusion():
    """One layer against the formula of BEVFusion's TransformerDecoderLayer, written out with
    matrix products: self-attention with q = k = v = query + pos, cross-attention with
    q = query + pos, k = v = key + key_pos, each post-norm; then the feed-forward block."""
    layer = _head().decoder[0].eval()
    B, C, P, N = 2, 64, 7, 50
    query, key = torch.randn(B, C, P), torch.randn(B, C, N)
    qpos, kpos = torch.rand(B, P, 2) * 32, torch.rand(B, N, 2) * 32

    def attn(mha, q, k, v):
        w, b = mha.in_proj_weight, mha.in_proj_bias
        heads = mha.num_heads
        split = lambda x: x.view(B, x.shape[1], heads, C // heads).transpose(1, 2)  # noqa: E731
        qh, kh, vh = (split(F.linear(x, w[i * C:(i + 1) * C], b[i * C:(i + 1) * C])) for i, x in enumerate((q, k, v)))
        a = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(C // heads), -1) @ vh
        return mha.out_proj(a.transpose(1, 2).reshape(B, -1, C))

    qe, ke = layer.self_posembed(qpos), layer.cross_posembed(kpos)
    q = query.transpose(1, 2)
    q = layer.norm1(q + attn(layer.self_attn, q + qe, q + qe, q + qe))
    k = key.transpose(1, 2) + ke
    q = layer.norm2(q + attn(layer.multihead_attn, q + qe, k, k))
    q = layer.norm3(q + layer.linear2(F.relu(layer.linear1(q))))
    assert torch.allclose(layer(query, key, qpos, kpos), q.transpose(1, 2), atol=1e-5)


def test_bbox_coder_round_trip():
    coder = TASK_UTILS.build(dict(type='TransFusionBBoxCoder', pc_range=PC[:2], voxel_size=VS[:2],
                                  out_size_factor=FACTOR, code_size=10))
    boxes = torch.tensor([[3.0, -7.5, -1.8, 4.5, 1.9, 1.6, 0.4, 1.0, -2.0],
                          [-20.0, 11.0, -0.5, 0.6, 0.7, 1.8, -2.9, 0.0, 0.3]])
    t = coder.encode(boxes)
    # x, y in cells of 1.6 m from the range's corner; z at the gravity centre
    assert torch.allclose(t[0, :3], torch.tensor([(3.0 + 25.6) / 1.6, (-7.5 + 25.6) / 1.6, -1.8 + 0.8]))
    cols = lambda a, b: t[:, a:b].T[None]  # noqa: E731
    out = coder.decode(torch.rand(1, 3, 2), cols(6, 8), cols(3, 6), cols(0, 2), cols(2, 3), cols(8, 10))[0]
    assert torch.allclose(out['bboxes'], boxes, atol=1e-5)


def _boxes(n, gen):
    xy = (torch.rand(n, 2, generator=gen) - 0.5) * 40
    size = torch.tensor([[4.5, 1.9, 1.6], [0.7, 0.7, 1.8], [0.5, 2.5, 1.0]])
    labels = torch.randint(0, 3, (n,), generator=gen)
    yaw = (torch.rand(n, 1, generator=gen) - 0.5) * 2 * math.pi
    vel = torch.randn(n, 2, generator=gen)
    return torch.cat([xy, torch.full((n, 1), -1.5), size[labels], yaw, vel], 1), labels


def test_hungarian_assignment_recovers_the_matching():
    """Predictions that are the ground truth in another order, plus far-off ones: each true
    box is matched to its copy (IoU 1), the rest are background; no ground truth: all background."""
    gen = torch.Generator().manual_seed(0)
    gt, labels = _boxes(6, gen)
    perm = torch.randperm(6, generator=gen)
    far = gt[:4].clone()
    far[:, :2] += 60.0
    preds = torch.cat([gt[perm], far])
    logits = torch.full((10, 3), -4.0)
    logits[torch.arange(6), labels[perm]] = 4.0
    assigner = TASK_UTILS.build(dict(type='HungarianAssigner3D'))
    index, iou = assigner.assign(preds, gt, labels, logits, [-51.2, -51.2, -5, 51.2, 51.2, 3])
    assert torch.equal(index[:6], perm) and (index[6:] == -1).all()
    assert torch.allclose(iou[:6], torch.ones(6), atol=1e-4) and (iou[6:] == 0).all()
    index, iou = assigner.assign(preds, gt[:0], labels[:0], logits, PC)
    assert (index == -1).all() and (iou == 0).all()


def test_layout_targets_queries_and_decoding_agree():
    """FULLER's [B, C, Y, X] layout throughout: a box at (x, y) draws its heatmap peak at row y,
    column x; the query started at that peak sits at that cell's centre; with zero offsets it
    decodes to the cell's centre in metres."""
    head = _head()
    box = torch.tensor([[10.1, -4.9, -1.5, 4.5, 1.9, 1.6, 0.0, 0.0, 0.0]])
    heat = head._heatmap_target(LiDARInstance3DBoxes(box, box_dim=9), torch.tensor([0]), 'cpu')
    col, row = int((10.1 + 25.6) / 1.6), int((-4.9 + 25.6) / 1.6)
    assert heat[0, row, col] == 1 and heat[0].flatten().argmax() == row * 32 + col
    assert torch.equal(head.bev_pos[0, row * 32 + col], torch.tensor([col + 0.5, row + 0.5]))
    # the dense heatmap of a one-hot feature at that cell peaks there once learned; here, the
    # peak search picks it when the heatmap is that target
    peaks = head._peaks(torch.logit(heat.clamp(1e-4, 1 - 1e-4))[None])
    assert peaks[0, 0].argmax() == row * 32 + col
    dec = head.bbox_coder.decode(torch.ones(1, 3, 1), torch.tensor([[[0.0], [1.0]]]), torch.zeros(1, 3, 1),
                                 head.bev_pos[:, row * 32 + col][..., None], torch.zeros(1, 1, 1), None)[0]
    assert torch.allclose(dec['bboxes'][0, :2], torch.tensor([-25.6 + (col + 0.5) * 1.6, -25.6 + (row + 0.5) * 1.6]))


def test_peak_search_suppresses_neighbours_but_not_pedestrians():
    """3x3 local maxima (border cells never), except for the classes BEVFusion leaves
    unsuppressed on nuScenes, found by name in the head's class order."""
    head = _head()
    assert head.peak_free_classes == (1,)  # 'pedestrian' in CLASSES; no traffic_cone
    logits = torch.full((1, 3, 32, 32), -5.0)
    logits[0, :, 10, 10], logits[0, :, 10, 11] = 2.0, 1.0  # a peak and its weaker neighbour
    logits[0, :, 0, 5] = 3.0  # a border cell
    peaks = head._peaks(logits).view(3, 32, 32)
    assert peaks[0, 10, 10] > 0 and peaks[0, 10, 11] == 0 and peaks[0, 0, 5] == 0
    assert peaks[1, 10, 11] > 0 and peaks[1, 0, 5] > 0  # pedestrian: every cell is a candidate


def _scene(gen, n=8):
    """A BEV feature that shows its boxes as a perfect sensor would (per cell inside a box: its
    class, the sine and cosine of its yaw and the offset to its centre in cells), and the boxes."""
    boxes, labels = _boxes(n, gen)
    feat = torch.zeros(len(CLASSES) + 4, 32, 32)
    ys, xs = torch.meshgrid(torch.arange(32) * 1.6 - 25.6 + 0.8, torch.arange(32) * 1.6 - 25.6 + 0.8, indexing='ij')
    for b, lab in zip(boxes, labels):
        dx, dy = xs - b[0], ys - b[1]
        c, s = math.cos(b[6]), math.sin(b[6])
        inside = ((dx * c + dy * s).abs() <= max(b[3] / 2, 0.8)) & ((-dx * s + dy * c).abs() <= max(b[4] / 2, 0.8))
        feat[lab][inside] = 1.0
        k = len(CLASSES)
        feat[k][inside], feat[k + 1][inside] = s, c
        feat[k + 2][inside], feat[k + 3][inside] = -dx[inside] / 1.6, -dy[inside] / 1.6
    sample = Det3DDataSample()
    sample.gt_instances_3d = InstanceData(bboxes_3d=LiDARInstance3DBoxes(boxes, box_dim=9), labels_3d=labels)
    return feat, sample


def test_it_learns_to_detect():
    """Trained alone on scenes whose BEV feature shows the boxes, the head finds the boxes of new
    scenes: every true box has a prediction of its class within 1 m, ranked in the top 2n, and the
    matched IoU logged during training rises."""
    torch.manual_seed(0)
    head = _head(dropout=0.0)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(1)
    ious = []
    for _ in range(300):
        feats, samples = zip(*[_scene(gen) for _ in range(2)])
        losses = head.loss(torch.stack(feats), list(samples))
        opt.zero_grad()
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        opt.step()
        ious.append(float(losses['matched_ious']))
    assert sum(ious[-25:]) / 25 > sum(ious[:25]) / 25 + 0.2
    head.eval()
    found = total = 0
    with torch.no_grad():
        for _ in range(4):
            feat, sample = _scene(gen)
            pred = head.predict(feat[None], [sample])[0]
            top = pred.scores_3d.argsort(descending=True)[:16]
            centers = pred.bboxes_3d.tensor[top, :2]
            gt = sample.gt_instances_3d
            for b, lab in zip(gt.bboxes_3d.tensor, gt.labels_3d):
                d = (centers - b[:2]).norm(dim=1)
                found += bool(((d < 1.0) & (pred.labels_3d[top] == lab)).any())
                total += 1
    assert found / total >= 0.8, f'found {found} of {total} boxes'


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match='use_sigmoid'):
        _head(loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=False))
    with pytest.raises(ValueError, match='nms_type'):
        _head(test_cfg=dict(grid_size=[128, 128, 1], out_size_factor=FACTOR, nms_type='circle'))
    head = _head()
    with pytest.raises(ValueError, match='expects a 32x32'):
        head(torch.zeros(1, 7, 16, 16))


def test_demo_config_trains_a_calibrated_step_with_both_tasks(demo_root, tmp_path):
    """The TransFusion demo config under FULLER's calibration: the class count and order come
    from the dataset (the unsuppressed classes found by name in FULLER's order, not BEVFusion's
    indices 8 and 9), and one calibrated step logs both tasks' finite losses."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper

    from fuller.datasets.metainfo import CLASSES as NUS
    from fuller.engine import apply_variant
    from fuller.registry import DATASETS
    from fuller.testing import REPO_ROOT, tiny_config

    base = f'{REPO_ROOT}/configs/fuller/naive_lc_r18-tiny-tf_1x2-900it_nuscenes-demo-det-map.py'
    path = tmp_path / 'tf_fuller.py'
    apply_variant(base, f'{REPO_ROOT}/configs/ablation/fuller.py').dump(str(path))
    cfg = tiny_config(demo_root, str(tmp_path), config=str(path))
    init_default_scope('fuller')
    model = MODELS.build(cfg.model)
    model.init_weights()
    det = model.heads['det']
    assert det.num_classes == len(NUS) and det.peak_free_classes == (NUS.index('pedestrian'), NUS.index('traffic_cone'))
    assert det.expected_input_shape()[0] == (64, 64)
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    data = pseudo_collate([DATASETS.build(cfg.train_dataloader.dataset)[0]])
    log = model.train_step(data, ow)
    assert {'det.loss_heatmap', 'det.layer_-1_loss_cls', 'det.layer_-1_loss_bbox', 'det.matched_ious'} <= set(log)
    assert any(k.startswith('map.') for k in log)
    assert all(float(v) == float(v) for v in log.values())
