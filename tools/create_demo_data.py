"""Generate FULLER's embedded demo dataset (a synthetic world in nuScenes v1.0-mini format).

Example:
    python tools/create_demo_data.py --out data/nuscenes-demo
    python tools/create_demo_data.py --out data/nuscenes-demo-big --keyframes 40 --sweeps 9 --image-scale 0.4
    python tools/create_demo_data.py --out data/nuscenes-demo --only-if-stale   # what tools/run_demo.sh does

The folder records the world version and the knobs it was made with (``demo_world.json``);
``--only-if-stale`` makes it again only when they are not this code's and these knobs, replacing
what the generator and ``tools/create_data.py`` wrote there (info files included).
"""

import argparse
import dataclasses
import json
import os
import os.path as osp
import shutil
import time

from fuller.utils.quiet import quiet_third_party_warnings

quiet_third_party_warnings()

from fuller.demo import MANIFEST, DemoConfig, demo_data_problem, generate_demo_dataset  # noqa: E402

# What the generator and tools/create_data.py write under the dataset root.
GENERATED = ('samples', 'sweeps', 'maps', 'v1.0-mini', 'nuscenes_gt_database', 'nuscenes_infos_train.pkl',
             'nuscenes_infos_val.pkl', 'nuscenes_dbinfos_train.pkl', MANIFEST)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='data/nuscenes-demo', help='dataset root to write')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--keyframes', type=int, default=DemoConfig.keyframes, help='keyframes per scene (10 scenes)')
    p.add_argument('--sweeps', type=int, default=DemoConfig.sweeps, help='LiDAR sweeps before each keyframe')
    p.add_argument('--image-scale', type=float, default=DemoConfig.image_scale, help='of 1600x900')
    p.add_argument('--azimuth-steps', type=int, default=DemoConfig.azimuth_steps, help='LiDAR firings/rev')
    p.add_argument('--lot-scenes', nargs='*', default=list(DemoConfig.lot_scenes), metavar='SCENE',
                   help='scenes whose ego drives through a large car park (e.g. scene-0655 scene-0916)')
    p.add_argument('--only-if-stale', action='store_true',
                   help='do nothing when --out already holds this world version made with these knobs')
    return p.parse_args()


def stale_reason(out: str, cfg: DemoConfig) -> str | None:
    """Why ``out`` is not the demo data of this code and ``cfg``, or None when it is."""
    problem = demo_data_problem(out)
    if problem is not None:
        return problem
    def as_json(c: DemoConfig) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(c)))

    with open(osp.join(out, MANIFEST)) as f:
        # A knob newer than the data's manifest was made at its default (which keeps the old output).
        made = {**as_json(DemoConfig()), **json.load(f).get('config', {})}
    want = as_json(cfg)
    diff = sorted(k for k in want if made[k] != want[k])
    return f'{out} was made with other knobs ({", ".join(f"{k}={made[k]}" for k in diff)})' if diff else None


def main() -> None:
    args = parse_args()
    cfg = DemoConfig(seed=args.seed, keyframes=args.keyframes, sweeps=args.sweeps, image_scale=args.image_scale,
                     azimuth_steps=args.azimuth_steps, lot_scenes=tuple(args.lot_scenes))
    if args.only_if_stale:
        why = stale_reason(args.out, cfg)
        if why is None:
            print(f'[create_demo_data] {args.out} is up to date', flush=True)
            return
        print(f'[create_demo_data] {why}: making it', flush=True)
        for name in GENERATED:
            path = osp.join(args.out, name)
            if osp.isdir(path):
                shutil.rmtree(path)
            elif osp.isfile(path):
                os.remove(path)
    t = time.time()
    stats = generate_demo_dataset(args.out, cfg)
    print(f'[create_demo_data] wrote {stats["samples"]} samples, {stats["annotations"]} annotations, '
          f'{stats["bytes"] / 1e6:.1f} MB to {args.out} in {time.time() - t:.0f} s')


if __name__ == '__main__':
    main()
