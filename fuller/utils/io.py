"""Files written whole or not at all."""

import json
import os
import os.path as osp


def write_json_atomic(path: str, obj, **dump_kwargs) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same directory and one
    ``os.replace``: a reader, or a run killed midway, sees the previous file or the new one,
    never half of one. Errors (disk full) name ``path``; the temporary file is removed."""
    tmp = osp.join(osp.dirname(path) or '.', f'.{osp.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'w') as f:
            json.dump(obj, f, **dump_kwargs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if osp.exists(tmp):
            os.remove(tmp)
        raise OSError(e.errno, f'could not write {path}: {e.strerror or e}') from e
