"""CenterPoint's test-time circle NMS (mmdet3d's numba function) is compiled once and then
loaded from numba's disk cache (fuller/models/heads/det_head.py)."""

import subprocess
import sys

from fuller.utils.cli import REPO_ROOT

SCRIPT = r'''
import numpy as np
import fuller.models.heads.det_head  # noqa: F401  (enables the cache)
from mmdet3d.models.layers.box3d_nms import circle_nms
dets = np.array([[0.0, 0.0, 0.9], [0.1, 0.0, 0.8], [5.0, 5.0, 0.7], [5.0, 5.2, 0.95]], np.float32)
keep = circle_nms(dets, 0.5, post_max_size=83)
assert [int(k) for k in keep] == [3, 0], keep  # by score; each suppresses its neighbour within the radius
print(sum(circle_nms.stats.cache_hits.values()), sum(circle_nms.stats.cache_misses.values()))
'''


def test_the_second_process_loads_circle_nms_from_the_cache():
    runs = [subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    hits, misses = (int(v) for v in runs[1].stdout.split()[-2:])
    assert hits >= 1 and misses == 0, runs[1].stdout  # loaded, not compiled again
