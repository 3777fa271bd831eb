"""What the metrics take from the dataset they score."""


def dataset_fact(metric, key: str):
    """``metric.dataset_meta[key]`` (set by the evaluation loop from the dataset's metainfo), or a
    KeyError naming the metric and the key when the metric was given neither."""
    meta = metric.dataset_meta or {}
    if key not in meta:
        raise KeyError(f'{type(metric).__name__}: no classes given and no dataset_meta["{key}"] (the evaluation '
                       f'loop sets dataset_meta from the dataset\'s metainfo)')
    return meta[key]
