"""Parameters and FLOPs of a model built from a config, at a fixed input size.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W]
        [--cfg-options k=v ...] [--show-table]

FLOPs are mmengine ``FlopAnalyzer`` counts, i.e. multiply-accumulates, on the
unfused model, with the selective scan counted as 9*B*L*D*N + B*D*L through
the handle of :mod:`mmmobilemamba.ops.complexity` (registered when
``mmmobilemamba`` is imported); mmengine leaves the wavelet-domain depthwise
conv (``padding='same'``) and any other unsupported op uncounted and the tool
lists them. The input is one random image of the given size (batch 1), not an
average over dataset images.

What is counted depends on the toolbox (the config's ``default_scope``) and
is defined, with the default sizes, in :mod:`mmmobilemamba.analysis.dense_parts`
(shared with ``benchmark.py``): for mmdet the backbone + neck + dense head at
1280x800 (SSD: its fixed test size), as the release's table counts, RoI heads
left out; for mmseg the backbone + neck + decode head at 512x512, the
auxiliary head left out as mmseg's own get_flops does. Another toolbox is
supported by adding its function to ``DENSE_PARTS`` there.
"""
import argparse
import sys
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, DictAction

from mmmobilemamba.analysis.dense_parts import DENSE_PARTS


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def analyse(config: str,
            shape: Optional[Tuple[int, int]] = None,
            cfg_options: Optional[dict] = None) -> dict:
    """Count parameters and FLOPs of the model of ``config``.

    Args:
        config (str): Config file.
        shape (tuple[int, int], optional): Input (H, W). Defaults to the
            toolbox's default (see the module docstring).
        cfg_options (dict, optional): Config overrides.

    Returns:
        dict: ``flops`` (int, counted part), ``params`` (counted part),
        ``params_all`` (whole model), ``shape``, ``counted`` (description),
        ``by_part`` ({name: (params, flops)}), ``uncounted`` ({op: calls}).
    """
    import mmmobilemamba  # noqa: F401  (registration + scan FLOP handle)
    from mmengine.analysis import FlopAnalyzer
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    scope = cfg.get('default_scope')
    if scope not in DENSE_PARTS:
        raise ValueError(f'{config}: no FLOP counting for default_scope '
                         f'{scope!r} yet (supported: {sorted(DENSE_PARTS)}'
                         '); add a function to DENSE_PARTS in '
                         'mmmobilemamba/analysis/dense_parts.py')
    # the weights do not matter for counting: never load a checkpoint
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    whole, counted, shape, what = DENSE_PARTS[scope](cfg, shape)
    counted.eval()
    inputs = (torch.rand(1, 3, *shape), )
    analyzer = FlopAnalyzer(counted, inputs)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analyzer.total()
    by_module = analyzer.by_module()
    by_part = {name: (_params(child), by_module.get(name, 0))
               for name, child in counted.named_children()}
    return dict(
        flops=total,
        params=_params(counted),
        params_all=_params(whole),
        shape=tuple(shape),
        counted=what,
        by_part=by_part,
        uncounted=dict(analyzer.unsupported_ops()),
        analyzer=analyzer)


def format_report(config: str, res: dict) -> List[str]:
    """Human-readable lines for the result of :func:`analyse`."""
    h, w = res['shape']
    lines = [
        f'config: {config}',
        f'input: 1x3x{h}x{w} (fixed size, batch 1)',
        f'counted: {res["counted"]}',
        f'FLOPs: {res["flops"] / 1e9:.2f} G (multiply-accumulates, mmengine '
        'FlopAnalyzer, unfused model; selective scan = 9*B*L*D*N + B*D*L)',
        f'params: {res["params"] / 1e6:.2f} M counted part, '
        f'{res["params_all"] / 1e6:.2f} M whole model',
    ]
    for name, (p, f) in res['by_part'].items():
        lines.append(f'  {name:<12} {p / 1e6:8.2f} M params '
                     f'{f / 1e9:9.2f} G FLOPs')
    if res['uncounted']:
        ops = ', '.join(f'{k} x{v}' for k, v in sorted(
            res['uncounted'].items()))
        lines.append(f'not counted (no FLOP handle): {ops}')
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--show-table', action='store_true',
                        help='also print the per-module table')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    res = analyse(args.config, tuple(args.shape) if args.shape else None,
                  args.cfg_options)
    print('\n'.join(format_report(args.config, res)))
    if args.show_table:
        from mmengine.analysis import flop_count_table
        print(flop_count_table(res['analyzer'], max_depth=3))
    return res


if __name__ == '__main__':
    sys.exit(main() and 0)
