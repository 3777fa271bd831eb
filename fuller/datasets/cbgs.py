"""Class-balanced grouping and sampling: mmdet3d's ``CBGSDataset`` (BEVFusion's
``data.train.type``), with a clear error where a class has no training sample."""

from mmdet3d.datasets import CBGSDataset as _MMDet3DCBGSDataset

from fuller.registry import DATASETS


@DATASETS.register_module()
class CBGSDataset(_MMDet3DCBGSDataset):
    """mmdet3d's ``CBGSDataset`` unchanged (the same draws from numpy's generator), except that a
    split in which a class has no sample stops with the classes and the info file named: mmdet3d
    divides by that class's share of the samples and ends in a ``ZeroDivisionError`` (seen on a
    one-keyframe root). Every class gets ``pairs / K`` draws, so a class with none cannot be
    balanced: restrict the classes, or train without the wrapper."""

    def _get_sample_indices(self, dataset) -> list[int]:
        classes = self.metainfo['classes']
        seen = set()
        for idx in range(len(dataset)):
            seen.update(int(c) for c in dataset.get_cat_ids(idx) if c != -1)
        absent = [name for i, name in enumerate(classes) if i not in seen]
        if absent:
            ann = getattr(dataset, 'ann_file', '?')
            raise ValueError(f'CBGSDataset: {ann} ({len(dataset)} samples) has no sample of {", ".join(absent)}: '
                             'class-balanced sampling needs every class. Restrict the classes '
                             "(metainfo=dict(classes=[...])) or train without the wrapper (train_dataloader.dataset = "
                             'its inner dataset)')
        return super()._get_sample_indices(dataset)
