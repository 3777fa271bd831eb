"""Parameter counts per module of one or more configs (e.g. standard vs lightweight heads).

    python tools/analysis/param_count.py configs/fuller/fuller_lc_swint_8x4-20e_nuscenes-det-map.py \
        configs/fuller/fuller-lite_lc_swint_8x4-20e_nuscenes-det-map.py --out docs/benchmarks/params.md
"""

import argparse
import os.path as osp

from fuller.utils.quiet import quiet_third_party_warnings

quiet_third_party_warnings()

from mmengine.registry import init_default_scope  # noqa: E402


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def param_table(config: str) -> dict[str, int]:
    """Parameters of the model of ``config``: per encoder, fuser, decoder, head, and total."""
    import fuller.models  # noqa: F401 - registers the model classes
    from fuller.engine import read_config
    from fuller.registry import MODELS

    init_default_scope('fuller')
    model = MODELS.build(read_config(config).model)
    rows = {f'encoders.{k}': count(v) for k, v in model.encoders.items()}
    if model.fuser is not None:
        rows['fuser'] = count(model.fuser)
    rows['decoder'] = count(model.decoder)
    rows.update({f'heads.{k}': count(v) for k, v in model.heads.items()})
    rows['heads (all)'] = count(model.heads)
    rows['total'] = count(model)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description='Parameter counts per module')
    p.add_argument('configs', nargs='+')
    p.add_argument('--out', help='write a markdown table here')
    args = p.parse_args()
    tables = {c: param_table(c) for c in args.configs}
    keys = list(dict.fromkeys(k for t in tables.values() for k in t))
    names = [osp.splitext(osp.basename(c))[0] for c in args.configs]
    lines = ['| module | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    for k in keys:
        lines.append(f'| {k} | ' + ' | '.join(f'{tables[c][k] / 1e6:.3f} M' if k in tables[c] else '–'
                                             for c in args.configs) + ' |')
    if len(args.configs) == 2:
        a, b = (tables[c]['heads (all)'] for c in args.configs)
        lines += ['', f'Heads: {b / 1e6:.3f} M vs {a / 1e6:.3f} M parameters, {100 * (1 - b / a):.1f}% fewer.']
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('# Parameters per module\n\n`python tools/analysis/param_count.py '
                    + ' '.join(args.configs) + f' --out {args.out}`\n\n' + text + '\n')


if __name__ == '__main__':
    main()
