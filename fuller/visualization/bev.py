"""Pictures: BEV views of points, boxes and map masks, camera views with projected boxes,
and training curves. Matplotlib only (Agg), so they render on headless machines."""

from dataclasses import dataclass

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from fuller.datasets.metainfo import camera_panel_order  # noqa: E402

# One colour per map class, by name (a metainfo fork with fewer or reordered map classes keeps
# each class's colour).
MAP_COLORS = {name: np.array(rgb, np.float32) / 255 for name, rgb in (
    ('drivable_area', (166, 206, 227)), ('ped_crossing', (251, 154, 153)), ('walkway', (227, 26, 28)),
    ('stop_line', (253, 191, 111)), ('carpark_area', (255, 127, 0)), ('divider', (106, 61, 154)))}
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
_EDGE_INDEX = np.asarray(BOX_EDGES)  # [12, 2], the corner pairs as an index array


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """[N, 4, 2] BEV corners of boxes [N, >=7] (x, y, z, dx, dy, dz, yaw)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, boxes.shape[-1] if len(boxes) else 7)
    x, y, dx, dy, yaw = boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    pts = local[None] * np.stack([dx, dy], 1)[:, None]
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return np.stack([pts[..., 0] * c - pts[..., 1] * s + x[:, None], pts[..., 0] * s + pts[..., 1] * c + y[:, None]], -1)


def box_corners_3d(boxes: np.ndarray) -> np.ndarray:
    """[N, 8, 3] corners of bottom-centred boxes; 0-3 bottom, 4-7 top, in BOX_EDGES order."""
    bev = box_corners_bev(boxes)
    z0 = np.asarray(boxes)[:, 2:3]
    z1 = z0 + np.asarray(boxes)[:, 5:6]
    bottom = np.concatenate([bev, np.broadcast_to(z0[:, None], bev.shape[:2] + (1,))], -1)
    top = np.concatenate([bev, np.broadcast_to(z1[:, None], bev.shape[:2] + (1,))], -1)
    return np.concatenate([bottom, top], 1)


def map_color(name: str) -> np.ndarray:
    """RGB in [0, 1] of the map class ``name`` (:data:`MAP_COLORS`; another name gets a fixed
    colour of its own from matplotlib's tab20, chosen by the name)."""
    if name in MAP_COLORS:
        return MAP_COLORS[name]
    import zlib

    return np.array(plt.get_cmap('tab20')(zlib.crc32(name.encode()) % 20)[:3], np.float32)


def map_to_rgb(masks: np.ndarray, classes) -> np.ndarray:
    """[K, H, W] binary masks of the map ``classes`` (K names, in mask order) -> [H, W, 3] RGB,
    each class in its own colour (later classes painted over earlier ones)."""
    masks = np.asarray(masks).astype(bool)
    if len(classes) != len(masks):
        raise ValueError(f'map_to_rgb: {len(masks)} masks but {len(classes)} map classes {list(classes)}')
    rgb = np.ones(masks.shape[1:] + (3,), np.float32)
    for mask, name in zip(masks, classes):
        rgb[mask] = map_color(name)
    return rgb


def _draw_boxes_bev(ax, boxes: np.ndarray, color: str, label: str, texts: list[str] | None = None) -> None:
    """Each box's outline and a line from its centre to its front, as one artist (an artist per
    line made matplotlib's every later artist slower to add: 0.3 s for a demo sample's boxes)."""
    corners = box_corners_bev(boxes)  # [N, 4, 2]
    centre = corners.mean(1)
    front = corners[:, [0, 3]].mean(1)
    outlines = np.concatenate([corners, corners[:, :1]], 1)
    heading = np.stack([centre, front], 1)
    ax.add_collection(LineCollection(list(outlines) + list(heading), colors=color, linewidths=0.8, label=label))
    for i, text in enumerate(texts or ()):
        ax.text(corners[i, :, 0].max() + 0.5, centre[i, 1], text, color=color, fontsize=5, va='center', clip_on=True)


def _draw_ego(ax, forward: np.ndarray | None) -> None:
    """The ego vehicle at the origin: a 4.5 x 1.9 m outline and an arrow along its heading."""
    f = np.array([1.0, 0.0]) if forward is None else np.asarray(forward[:2], np.float64)
    f = f / max(np.linalg.norm(f), 1e-9)
    left = np.array([-f[1], f[0]])
    corners = np.array([f * a + left * b for a, b in ((2.25, 0.95), (2.25, -0.95), (-2.25, -0.95), (-2.25, 0.95))])
    ax.fill(corners[:, 0], corners[:, 1], color='k', alpha=0.8, zorder=5, label='ego')
    ax.annotate('', xy=f * 7.0, xytext=(0, 0), arrowprops=dict(arrowstyle='->', color='k', lw=1.5), zorder=6)


def _camera_order(cam_names: tuple | None, n_cam: int) -> list[tuple[int, str]]:
    """(index into the images, title) in rig order; unknown names keep their position."""
    if not cam_names or len(cam_names) != n_cam:
        return [(i, f'camera {i}') for i in range(n_cam)]
    return [(cam_names.index(c), c) for c in camera_panel_order(cam_names)]


@dataclass
class SampleView:
    """What one picture shows of one sample, all in the (augmented) LiDAR frame.

    Attributes:
        points: [N, >=2] LiDAR points (x, y, ...).
        gt_boxes, pred_boxes: [N, >=7] bottom-centred boxes (x, y, z, dx, dy, dz, yaw, ...).
        pred_scores, pred_labels: [N] score and class index of each predicted box.
        gt_map: [K, H, W] binary; pred_map: [K, H, W] probabilities.
        imgs: [N_cam, H, W, 3] uint8 or 0-255 float images.
        lidar2img: [N_cam, 4, 4] LiDAR -> original image pixels, (u*d, v*d, d, 1).
        img_aug: [N_cam, 4, 4] original -> augmented pixels, acting on (u, v, d, 1).
        ego_forward: the ego vehicle's forward direction (x, y); default +x.
    """

    points: np.ndarray | None = None
    gt_boxes: np.ndarray | None = None
    pred_boxes: np.ndarray | None = None
    pred_scores: np.ndarray | None = None
    pred_labels: np.ndarray | None = None
    gt_map: np.ndarray | None = None
    pred_map: np.ndarray | None = None
    imgs: np.ndarray | None = None
    lidar2img: np.ndarray | None = None
    img_aug: np.ndarray | None = None
    ego_forward: np.ndarray | None = None


def _bev_axes(ax, title: str) -> None:
    ax.set_aspect('equal')
    ax.set_xlabel('x (m)')
    ax.set_ylabel('y (m)')
    ax.set_title(title)


def _draw_box_panel(ax, s: SampleView, bev_range: float, class_names: tuple) -> None:
    """Points, GT boxes (green), predicted boxes (red, with class and score) and the ego."""
    if s.points is not None and len(s.points):
        p = np.asarray(s.points)
        keep = (np.abs(p[:, 0]) < bev_range) & (np.abs(p[:, 1]) < bev_range)
        ax.scatter(p[keep, 0], p[keep, 1], s=0.2, c='0.45', linewidths=0)
    if s.gt_boxes is not None and len(s.gt_boxes):
        _draw_boxes_bev(ax, s.gt_boxes, 'tab:green', 'ground truth')
    if s.pred_boxes is not None and len(s.pred_boxes):
        texts = None
        if s.pred_scores is not None:
            labels = s.pred_labels if s.pred_labels is not None else np.zeros(len(s.pred_scores))
            names = [class_names[int(k)] if s.pred_labels is not None and int(k) < len(class_names) else ''
                     for k in labels]
            texts = [f'{n} {float(sc):.2f}'.strip() for n, sc in zip(names, s.pred_scores)]
        _draw_boxes_bev(ax, s.pred_boxes, 'tab:red', 'prediction (class score)', texts)
    _draw_ego(ax, s.ego_forward)
    ax.set_xlim(-bev_range, bev_range)
    ax.set_ylim(-bev_range, bev_range)
    _bev_axes(ax, 'LiDAR BEV: boxes')
    ax.legend(loc='upper right', fontsize=8)


def _draw_map_panels(fig, grid, s: SampleView, map_classes: tuple, map_extent: tuple, map_threshold) -> None:
    """GT and thresholded predicted masks side by side, one legend for both."""
    k_classes = 0 if s.gt_map is None and s.pred_map is None else len(s.gt_map if s.gt_map is not None else s.pred_map)
    if k_classes and len(map_classes) != k_classes:
        raise ValueError(f'draw_sample: {k_classes} map masks but map_classes={list(map_classes)}; name the class '
                         'of every mask (the dataset\'s metainfo map_classes)')
    thr = np.broadcast_to(np.asarray(map_threshold, dtype=np.float64), (k_classes,))
    for col, (mask, name) in enumerate(((s.gt_map, 'map: ground truth'), (s.pred_map, 'map: prediction')), 1):
        ax = fig.add_subplot(grid[0, col])
        if mask is None:
            ax.set_title(name)
            ax.axis('off')
            continue
        m = np.asarray(mask)
        if col == 2:
            m = m >= thr[:, None, None]
            same = np.allclose(thr, thr[0]) if len(thr) else True
            name += f' (threshold {thr[0]:.2f})' if same and len(thr) else ' (per-class thresholds)'
        ax.imshow(map_to_rgb(m, map_classes), origin='lower', extent=map_extent, interpolation='nearest')
        _draw_ego(ax, s.ego_forward)
        _bev_axes(ax, name)
    if k_classes and map_classes:
        labels = [c if len(thr) != len(map_classes) else f'{c} ({t:.2f})' for c, t in zip(map_classes, thr)] \
            if s.pred_map is not None else list(map_classes)
        handles = [plt.Rectangle((0, 0), 1, 1, color=map_color(c)) for c in map_classes]
        fig.legend(handles, labels, loc='upper center', bbox_to_anchor=(2 / 3, 1 - 0.2 / fig.get_figheight()),
                   ncol=len(map_classes), fontsize=9, frameon=False,
                   title='map classes' + (' (prediction threshold)' if s.pred_map is not None else ''))


def project_boxes(boxes: np.ndarray, lidar2img: np.ndarray, img_aug: np.ndarray | None, size: tuple[int, int]):
    """[N, 8, 2] augmented-image pixels of the boxes' corners, and which boxes to draw: all
    corners at least 0.5 m in front of the camera and a corner inside the ``size`` (h, w) image."""
    corners = box_corners_3d(np.asarray(boxes))
    hom = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], -1) @ np.asarray(lidar2img).T
    depth = hom[..., 2]
    uv = hom[..., :2] / np.maximum(depth[..., None], 1e-3)
    if img_aug is not None:
        q = np.concatenate([uv, depth[..., None], np.ones_like(depth[..., None])], -1)
        uv = (q @ np.asarray(img_aug).T)[..., :2]
    h, w = size
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
    return uv, (depth >= 0.5).all(1) & inside.any(1)


def _draw_camera_panels(fig, grid, s: SampleView, cam_names: tuple | None) -> None:
    """The images, titled and in rig order, with the boxes projected (GT lime, predicted red)."""
    n_cam = 0 if s.imgs is None else len(s.imgs)
    for slot, (i, cam) in enumerate(_camera_order(cam_names, n_cam)):
        ax = fig.add_subplot(grid[1 + slot // 3, slot % 3])
        img = np.asarray(s.imgs[i])
        ax.imshow(np.clip(img, 0, 255).astype(np.uint8))
        ax.set_title(cam, fontsize=9)
        h, w = img.shape[:2]
        for boxes, color in ((s.gt_boxes, 'lime'), (s.pred_boxes, 'red')):
            if boxes is None or not len(boxes) or s.lidar2img is None:
                continue
            uv, shown = project_boxes(boxes, s.lidar2img[i], None if s.img_aug is None else s.img_aug[i], (h, w))
            ax.add_collection(LineCollection(uv[shown][:, _EDGE_INDEX].reshape(-1, 2, 2), colors=color,
                                             linewidths=0.6))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])  # hidden with the axis, but tight_layout would still make its ticks
        ax.set_yticks([])
        ax.axis('off')


def draw_sample(out_path: str, sample: SampleView, map_classes: tuple = (), class_names: tuple = (),
                cam_names: tuple | None = None, map_extent: tuple = (-50, 50, -50, 50), bev_range: float = 51.2,
                map_threshold=0.5, title: str = '') -> None:
    """Save one PNG of ``sample``: BEV points with GT (green) and predicted (red, with class and
    score) boxes and the ego vehicle, GT and predicted map masks side by side with one legend,
    and the camera images (titled, in rig order) with the boxes projected. BEV axes are in
    metres in the LiDAR frame.

    Args:
        out_path: PNG path.
        sample: the sample's arrays (:class:`SampleView`).
        map_classes: the map class of each mask (their colours and the legend); required with
            ``gt_map`` / ``pred_map``.
        class_names: detection class names (the labels of the predicted boxes).
        cam_names: camera channel of each image (``CAM_FRONT``, ...): panel titles and rig order.
        map_extent: (xmin, xmax, ymin, ymax) of the map grid; row i is y, column j is x.
        bev_range: half-size of the BEV plot, m.
        map_threshold: probability threshold of the predicted mask: one for all classes or one
            per class (the thresholds the map metric chose).
        title: figure title.
    """
    n_cam = 0 if sample.imgs is None else len(sample.imgs)
    cam_rows = (n_cam + 2) // 3
    fig = plt.figure(figsize=(15, 5.6 + 2.6 * cam_rows))
    grid = fig.add_gridspec(1 + cam_rows, 3, height_ratios=[5.6] + [2.6] * cam_rows)
    _draw_box_panel(fig.add_subplot(grid[0, 0]), sample, bev_range, class_names)
    _draw_map_panels(fig, grid, sample, map_classes, map_extent, map_threshold)
    _draw_camera_panels(fig, grid, sample, cam_names)
    if title:
        fig.suptitle(title, fontsize=9, x=0.02, ha='left')
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    fig.savefig(out_path, dpi=80)
    plt.close(fig)


def plot_curves(out_path: str, series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], ylabel: str,
                title: str = '', hline: float | None = None, logy: bool = False, smooth: int = 1) -> None:
    """One line per (run, label): ``series[run][label] = (x, y)``; a moving average of ``smooth``."""
    fig, ax = plt.subplots(figsize=(7, 4))
    lines = [(f'{run} {label}'.strip(), xy) for run, curves in series.items() for label, xy in curves.items()]
    cmap = plt.get_cmap('tab10' if len(lines) <= 10 else 'tab20')  # distinct colours up to 20 lines
    for i, (name, (x, y)) in enumerate(lines):
        y = np.asarray(y, dtype=np.float64)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode='valid')
            x = np.asarray(x)[smooth - 1:]
        ax.plot(x, y, lw=1.2, color=cmap(i % cmap.N), ls='-' if i < 10 else '--', label=name)
    if hline is not None:
        ax.axhline(hline, color='k', lw=0.8, ls='--')
    if logy:
        ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if lines:
        ax.legend(fontsize=7, ncol=2 if len(lines) > 8 else 1)
    else:  # e.g. the task-gradient cosine of a study of single-task runs
        ax.text(0.5, 0.5, 'no run logged this curve', ha='center', va='center', transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def plot_task_tradeoff(out_path: str, points: dict[str, dict[str, list[tuple[float, float]]]],
                       single_task: dict[str, tuple[str, list[float]]] | None = None, title: str = '') -> None:
    """mAP against mIoU, one marker per variant at its mean over seeds with the seed spread
    (±1 std) as error bars.

    Args:
        points: ``points[variant][input] = [(mIoU, mAP) per seed]``, ``input`` one of
            ``'both'`` (filled marker), ``'-camera'`` and ``'-LiDAR'`` (hollow markers joined to
            the variant's own by a thin line: the same model with that sensor dropped).
        single_task: ``name -> ('mAP' | 'mIoU', values per seed)``: a single-task variant as a
            horizontal (mAP) or vertical (mIoU) dashed line at its mean.
    """
    fig, ax = plt.subplots(figsize=(10.5, 5.5))
    cmap = plt.get_cmap('tab10' if len(points) <= 10 else 'tab20')
    styles = {'both': dict(marker='o', mfc=None), '-camera': dict(marker='s', mfc='none'),
              '-LiDAR': dict(marker='^', mfc='none')}
    for i, (name, by_input) in enumerate(points.items()):
        colour = cmap(i % cmap.N)
        centre, labelled = None, False
        for inp in ('both', '-camera', '-LiDAR'):
            vals = np.asarray(by_input.get(inp, []), dtype=np.float64).reshape(-1, 2)
            if not len(vals):
                continue
            m = vals.mean(0)
            err = vals.std(0, ddof=1) if len(vals) > 1 else np.zeros(2)
            st = styles[inp]
            ax.errorbar(m[0], m[1], xerr=err[0], yerr=err[1], color=colour, marker=st['marker'], ms=7,
                        mfc=colour if st['mfc'] is None else 'none', capsize=2, lw=1,
                        label=None if labelled else name)
            labelled = True
            if inp == 'both':
                centre = m
            elif centre is not None:
                ax.plot([centre[0], m[0]], [centre[1], m[1]], color=colour, lw=0.6, alpha=0.6)
    for name, (metric, vals) in (single_task or {}).items():
        if not vals:
            continue
        v = float(np.mean(vals))
        (ax.axhline if metric == 'mAP' else ax.axvline)(v, color='0.4', ls='--', lw=0.9)
        if metric == 'mAP':
            ax.annotate(name, (0.0, v), xycoords=('axes fraction', 'data'), fontsize=7, color='0.3',
                        xytext=(3, 2), textcoords='offset points')
        else:
            ax.annotate(name, (v, 0.0), xycoords=('data', 'axes fraction'), fontsize=7, color='0.3',
                        rotation=90, xytext=(2, 3), textcoords='offset points')
    ax.plot([], [], 's', mfc='none', color='k', label='camera dropped')
    ax.plot([], [], '^', mfc='none', color='k', label='LiDAR dropped')
    ax.set_xlabel('mIoU (%)')
    ax.set_ylabel('mAP (%)')
    if title:
        ax.set_title(title)
    # beside the axes, so that the points stay visible
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
