"""Generate FULLER's embedded demo dataset (a synthetic world in nuScenes v1.0-mini format).

Example:
    python tools/create_demo_data.py --out data/nuscenes-demo
    python tools/create_demo_data.py --out data/nuscenes-demo-big --keyframes 40 --sweeps 9 --image-scale 0.4
"""

import argparse
import time

from fuller.utils.quiet import quiet_third_party_warnings

quiet_third_party_warnings()

from fuller.demo import DemoConfig, generate_demo_dataset  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='data/nuscenes-demo', help='dataset root to write')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--keyframes', type=int, default=DemoConfig.keyframes, help='keyframes per scene (10 scenes)')
    p.add_argument('--sweeps', type=int, default=DemoConfig.sweeps, help='LiDAR sweeps before each keyframe')
    p.add_argument('--image-scale', type=float, default=DemoConfig.image_scale, help='of 1600x900')
    p.add_argument('--azimuth-steps', type=int, default=DemoConfig.azimuth_steps, help='LiDAR firings/rev')
    return p.parse_args()


def main() -> None:
    args = parse_args()
    cfg = DemoConfig(seed=args.seed, keyframes=args.keyframes, sweeps=args.sweeps, image_scale=args.image_scale,
                     azimuth_steps=args.azimuth_steps)
    t = time.time()
    stats = generate_demo_dataset(args.out, cfg)
    print(f'[create_demo_data] wrote {stats["samples"]} samples, {stats["annotations"]} annotations, '
          f'{stats["bytes"] / 1e6:.1f} MB to {args.out} in {time.time() - t:.0f} s')


if __name__ == '__main__':
    main()
