"""Convert a BEVFusion checkpoint into a FULLER checkpoint that loads strictly into a config.

Reads a BEVFusion-MIT detection or map checkpoint, or an mmdet3d ``projects/BEVFusion`` one
(without running any code from it), maps every tensor to the FULLER model the config builds
and writes ``{'state_dict': ..., 'meta': ...}``. Names, BEV kernel layout, sparse kernel layout,
class order and (BEVFusion-MIT) the box convention are converted; ``fuller/models/bevfusion_weights.py``
says how and why. It prints per FULLER module how many tensors were filled, and refuses to write
a result that leaves a tensor of the model empty or a tensor of the file unused, unless
``--allow-partial`` is given.

Examples:
    # BEVFusion-MIT's camera+LiDAR detector into FULLER's BEVFusion detection config
    python tools/misc/convert_bevfusion.py configs/bevfusion/bevfusion-det_lc_swint_8x4-6e_nuscenes.py \\
        bevfusion-det.pth checkpoints/bevfusion-det_fuller.pth
    # one joint det+map starting point: everything from the detector, the map head from the map model
    python tools/misc/convert_bevfusion.py configs/fuller/naive_lc_swint_8x4-20e_nuscenes-det-map.py \\
        bevfusion-det.pth checkpoints/bevfusion-det-map_fuller.pth --map-checkpoint bevfusion-seg.pth
    # then: tools/train.py <config> --load-from checkpoints/bevfusion-det-map_fuller.pth
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from fuller.utils.quiet import quiet_third_party_warnings  # noqa: E402

quiet_third_party_warnings()

from fuller.engine.bevfusion_convert import convert, save_converted  # noqa: E402
from fuller.engine.checkpoint_io import CheckpointLoadError  # noqa: E402
from fuller.models.bevfusion_weights import SOURCES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description='Convert a BEVFusion checkpoint into a FULLER checkpoint')
    p.add_argument('config', help='the FULLER config whose model the checkpoint is converted for')
    p.add_argument('src', help='BEVFusion-MIT or mmdet3d projects/BEVFusion checkpoint')
    p.add_argument('dst', help='FULLER checkpoint to write')
    p.add_argument('--map-checkpoint', help='take the map head from this BEVFusion map checkpoint '
                   '(everything else comes from src)')
    p.add_argument('--source', default='auto', choices=('auto',) + SOURCES,
                   help='whose names the checkpoints use (default: recognised from the names)')
    p.add_argument('--box-convention', choices=('0.x', '1.x'),
                   help="the boxes the detector was trained on: mmdet3d 0.x (w, l, h; -yaw-pi/2: BEVFusion-MIT's, "
                        "the default for its names) or 1.x (mmdet3d's port, the default for its names)")
    p.add_argument('--allow-partial', action='store_true',
                   help='write the result even when tensors of the model stay empty or of the file go unused')
    args = p.parse_args()
    try:
        model, conv = convert(args.config, args.src, args.map_checkpoint, args.source, args.box_convention,
                              args.allow_partial)
    except (CheckpointLoadError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f'convert_bevfusion: {e}') from None
    save_converted(model, conv, args.dst, sources=[args.src] + ([args.map_checkpoint] if args.map_checkpoint else []),
                   config=args.config)
    print(f'wrote {args.dst}: {len(conv.state)} of {len(model.state_dict())} tensors converted'
          + ('' if conv.complete else f' ({len(conv.missing)} left as initialised)'))


if __name__ == '__main__':
    main()
