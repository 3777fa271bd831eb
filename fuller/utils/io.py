"""Files written whole or not at all."""

import json
import os
import os.path as osp


def write_bytes_atomic(path: str, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and one
    ``os.replace``: a reader, or a run killed midway, sees the previous file or the new one,
    never half of one. Errors (disk full) name ``path``; the temporary file is removed.
    ``fsync=False`` skips flushing to the disk (many small files that can be rebuilt)."""
    tmp = osp.join(osp.dirname(path) or '.', f'.{osp.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if osp.exists(tmp):
            os.remove(tmp)
        raise OSError(e.errno, f'could not write {path}: {e.strerror or e}') from e


def write_json_atomic(path: str, obj, **dump_kwargs) -> None:
    """Write ``obj`` as JSON to ``path`` whole or not at all (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, json.dumps(obj, **dump_kwargs).encode())
