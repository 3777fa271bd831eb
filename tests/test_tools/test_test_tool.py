import json
import os.path as osp
import pickle
import subprocess
import sys

import torch
from mmengine.registry import init_default_scope

from fuller.testing import REPO_ROOT, tiny_config


def test_test_tool_prints_table_writes_json_and_pictures(demo_root, tmp_path):
    from fuller.registry import MODELS

    cfg = tiny_config(demo_root, str(tmp_path / 'work'))
    init_default_scope('fuller')
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'init.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    proc = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), str(cfg_path), str(ckpt),
                           '--show-dir', 'vis', '--score-thr', '0.0'], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert '3D detection (nuScenes devkit)' in out and 'BEV map segmentation' in out, out
    metrics = json.loads((tmp_path / 'work' / 'metrics.json').read_text())['metrics']
    for key in ('det/mAP', 'det/NDS', 'det/mATE', 'det/AP_car', 'map/mIoU', 'map/IoU_drivable_area'):
        assert 0.0 <= metrics[key] <= 1.0 or key.startswith('det/m'), key
    assert osp.isfile(tmp_path / 'work' / 'nuscenes_det' / 'results_nusc.json')
    with open(osp.join(demo_root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        n_val = len(pickle.load(f)['data_list'])
    pngs = sorted((tmp_path / 'work' / 'vis').glob('*.png'))
    assert len(pngs) == n_val
    assert pngs[0].stat().st_size > 20_000  # a real figure, not an empty canvas


def _tiny_run(demo_root, tmp_path):
    from fuller.registry import MODELS

    cfg = tiny_config(demo_root, str(tmp_path / 'work'))
    init_default_scope('fuller')
    torch.manual_seed(0)
    ckpt = tmp_path / 'init.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, ckpt)
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    return cfg_path, ckpt


def _test_tool(*args):
    return subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


def test_drop_modality_writes_its_own_metrics_and_a_failed_run_leaves_no_stale_ones(demo_root, tmp_path):
    cfg_path, ckpt = _tiny_run(demo_root, tmp_path)
    work = tmp_path / 'work'
    work.mkdir(exist_ok=True)
    (work / 'metrics.json').write_text('{"metrics": {"det/mAP": 0.5}}')  # the run's full-sensor evaluation
    # (with the map also scored by distance from the ego: --map-iou-by-distance)
    proc = _test_tool(cfg_path, ckpt, '--drop-modality', 'lidar', '--map-iou-by-distance', '15', '30',
                      '--map-iou-near-boxes', 'car', 'pedestrian')
    assert proc.returncode == 0, proc.stderr[-3000:]
    dropped = json.loads((work / 'metrics_drop-lidar.json').read_text())
    assert dropped['drop_modality'] == 'lidar' and 'map/mIoU' in dropped['metrics']
    for band in ('0-15m', '15-30m', '30m+'):
        assert 0.0 <= dropped['metrics'][f'map/mIoU@{band}'] <= 1.0, band
        assert f'map/IoU_drivable_area@{band}' in dropped['metrics']
    # (and next to the cars and pedestrians of each sample's annotations and away from them)
    for region in ('near-car+pedestrian-5m', 'away-car+pedestrian-5m'):
        assert 0.0 <= dropped['metrics'][f'map/mIoU@{region}'] <= 1.0, region
    assert osp.isfile(work / 'nuscenes_det_drop-lidar' / 'results_nusc.json')
    assert json.loads((work / 'metrics.json').read_text())['metrics'] == {'det/mAP': 0.5}  # untouched
    assert not [p.name for p in work.rglob('.*.tmp-*')]  # no temporary files left
    # An evaluation that does not finish removes the metrics file it would have written.
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {'fuser.weight': torch.zeros(1)}, 'meta': {}}, bad)
    proc = _test_tool(cfg_path, bad, '--drop-modality', 'lidar')
    assert proc.returncode != 0
    assert not osp.exists(work / 'metrics_drop-lidar.json')
