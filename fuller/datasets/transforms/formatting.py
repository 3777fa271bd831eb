"""Pack a sample's arrays into model inputs and a :class:`Det3DDataSample`."""

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.structures import Det3DDataSample
from mmengine.structures import InstanceData

from fuller.registry import TRANSFORMS

META_KEYS = ('token', 'sample_idx', 'timestamp', 'location', 'ego2global', 'lidar_path', 'cam2img', 'lidar2cam',
             'img_aug_matrix', 'lidar_aug_matrix', 'img_shape', 'ori_img_shape', 'box_type_3d', 'num_pts_feats')


@TRANSFORMS.register_module()
class PackMultiTaskInputs(BaseTransform):
    """Pack points, images, boxes and the map mask.

    Output: ``inputs`` with ``points`` ([N, C] float32) and/or ``imgs`` ([N_cam, 3, H, W]
    float32, RGB 0-255); ``data_samples`` with ``gt_instances_3d`` (``bboxes_3d``,
    ``labels_3d``), ``gt_map`` ([6, ny, nx] uint8 tensor) when present, and the geometry in
    its metainfo.
    """

    def transform(self, results: dict) -> dict:
        inputs = {}
        if 'points' in results:
            inputs['points'] = results['points'].tensor
        if 'imgs' in results:
            inputs['imgs'] = torch.from_numpy(_stack_chw(results['imgs']))
        sample = Det3DDataSample()
        gt = InstanceData()
        if 'gt_bboxes_3d' in results:
            gt.bboxes_3d = results['gt_bboxes_3d']
            gt.labels_3d = torch.as_tensor(results['gt_labels_3d'], dtype=torch.long)
        sample.gt_instances_3d = gt
        if 'gt_map' in results:
            sample.gt_map = torch.from_numpy(results['gt_map'])
        if 'eval_ann_info' in results:
            sample.eval_ann_info = results['eval_ann_info']
        meta = {k: results[k] for k in META_KEYS if k in results}
        if 'lidar_points' in results:
            meta['lidar2ego'] = results['lidar_points']['lidar2ego']
        sample.set_metainfo(meta)
        return {'inputs': inputs, 'data_samples': sample}


def _stack_chw(imgs: list) -> np.ndarray:
    """[N, 3, H, W] contiguous from N [H, W, 3] images, written once (a stack then a contiguous
    transpose would copy every image twice: 13 MB twice for six 256 x 704 float32 images)."""
    first = np.asarray(imgs[0])
    out = np.empty((len(imgs), first.shape[2], *first.shape[:2]), first.dtype)
    for i, img in enumerate(imgs):
        img = np.asarray(img)
        if img.shape != first.shape:
            raise ValueError(f'PackMultiTaskInputs: camera images of different shapes {first.shape} and {img.shape} '
                             f'(image {i}); the augmentation must bring them to one size')
        out[i] = img.transpose(2, 0, 1)
    return out
