"""Take only the weights of a checkpoint, without running any code from it.

Checkpoints of plain mmengine/mmdet3d training (CenterPoint, BEVFusion, ...) hold Python
objects besides tensors, so FULLER's safe loader refuses them. This reads such a file with an
unpickler that resolves only what torch's safe loader allows and replaces every other object
by an inert placeholder (nothing the file names is executed), keeps the tensors of its
``state_dict`` and writes them as a plain checkpoint that loads safely.

Example (a camera backbone from a detector checkpoint):
    python tools/misc/extract_weights.py detector.pth checkpoints/detector-weights.pth
    # model.encoders.camera.backbone.init_cfg=dict(type='Pretrained',
    #     checkpoint='checkpoints/detector-weights.pth', prefix='backbone.')

BEVFusion checkpoints keep BEV maps in another layout: FULLER's loader refuses them whole, and only
their camera backbone loads as it is (README, "Checkpoints").
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from fuller.utils.quiet import quiet_third_party_warnings  # noqa: E402

quiet_third_party_warnings()

import torch  # noqa: E402

from fuller.engine.checkpoint_io import CheckpointLoadError, extract_state_dict  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description='Take only the weights of a checkpoint, running no code from it')
    p.add_argument('src', help='checkpoint to read (any origin)')
    p.add_argument('dst', help='plain checkpoint to write ({"state_dict": tensors})')
    p.add_argument('--strip-prefix', default='', help='remove this prefix from every key that has it')
    p.add_argument('--add-prefix', default='', help='then prepend this prefix to every key')
    args = p.parse_args()
    try:
        state = extract_state_dict(args.src)
    except CheckpointLoadError as e:
        raise SystemExit(f'extract_weights: {e}') from None
    out = {}
    for k, v in state.items():
        if args.strip_prefix and k.startswith(args.strip_prefix):
            k = k[len(args.strip_prefix):]
        out[args.add_prefix + k] = v
    torch.save({'state_dict': out}, args.dst)
    print(f'{len(out)} tensors from {args.src} written to {args.dst}')


if __name__ == '__main__':
    main()
