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

What is counted depends on the toolbox (the config's ``default_scope``):

* mmdet: backbone + neck + dense head (``bbox_head`` of one-stage detectors,
  ``rpn_head`` of two-stage ones), as the release's table counts; RoI heads
  depend on the number of proposals and are left out. Default size 1280x800
  (H=1280, W=800, as mmdet's tool), or the fixed test size of configs that
  resize to a square without keeping the ratio (SSD).
* mmseg: backbone + neck + decode head, what the segmentor computes at test
  time; the auxiliary head (training only) is left out, as mmseg's own
  get_flops does. SyncBN is reverted to BN for counting. Default 512x512.

Other toolboxes are supported by adding a function to ``COUNTED_MODELS``
that returns the module to trace, its inputs and the size used.
"""
import argparse
import sys
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, DictAction


class DenseDetectorPart(nn.Module):
    """Backbone + neck + dense head of an mmdet detector, as one module.

    Args:
        detector (nn.Module): A built mmdet detector.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.neck = getattr(detector, 'neck', None)
        head = getattr(detector, 'bbox_head', None)
        if head is None:
            head = getattr(detector, 'rpn_head', None)
        if head is None:
            raise ValueError(f'{type(detector).__name__} has neither a '
                             'bbox_head nor an rpn_head to count')
        self.dense_head = head

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.dense_head(feats)


def _fixed_test_size(cfg: Config) -> Optional[Tuple[int, int]]:
    """(H, W) of a test pipeline that resizes to a fixed size, else None."""
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset') or {}
    for step in dataset.get('pipeline') or []:
        if step.get('type') == 'Resize' and step.get('keep_ratio') is False:
            scale = step.get('scale')
            if isinstance(scale, int):
                return scale, scale
            w, h = scale
            return h, w
    return None


def det_counted_model(cfg: Config, shape: Optional[Tuple[int, int]]):
    """mmdet: backbone + neck + dense head on a (1, 3, H, W) input."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    detector = MODELS.build(cfg.model)
    shape = shape or _fixed_test_size(cfg) or (1280, 800)
    counted = DenseDetectorPart(detector)
    what = ('backbone + neck + dense head '
            f'({type(counted.dense_head).__name__})')
    if getattr(detector, 'roi_head', None) is not None:
        what += ('; the RoI head (depends on the number of proposals) is not '
                 'counted')
    return detector, counted, shape, what


class SegmentorPart(nn.Module):
    """Backbone + neck + decode head of an mmseg segmentor, as one module.

    Args:
        segmentor (nn.Module): A built mmseg ``EncoderDecoder``.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.backbone = segmentor.backbone
        self.neck = getattr(segmentor, 'neck', None)
        self.decode_head = segmentor.decode_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.decode_head(feats)


def seg_counted_model(cfg: Config, shape: Optional[Tuple[int, int]]):
    """mmseg: backbone + neck + decode head on a (1, 3, H, W) input."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    # SyncBN needs a process group to run, not to be counted
    segmentor = revert_sync_batchnorm(MODELS.build(cfg.model))
    # the auxiliary head stays in the whole model's params, not the counted
    counted = SegmentorPart(segmentor)
    what = ('backbone + ' + ('neck + ' if counted.neck is not None else '') +
            f'decode head ({type(counted.decode_head).__name__}); auxiliary '
            'head not counted')
    return segmentor, counted, shape or (512, 512), what


#: default_scope -> fn(cfg, shape or None) ->
#:     (whole model, module to trace, (H, W), description of what is counted)
COUNTED_MODELS: Dict[str, Callable] = {
    'mmdet': det_counted_model,
    'mmseg': seg_counted_model,
}


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
    if scope not in COUNTED_MODELS:
        raise ValueError(f'{config}: no FLOP counting for default_scope '
                         f'{scope!r} yet (supported: {sorted(COUNTED_MODELS)}'
                         '); add a function to COUNTED_MODELS in '
                         'tools/analysis_tools/get_flops.py')
    # the weights do not matter for counting: never load a checkpoint
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    whole, counted, shape, what = COUNTED_MODELS[scope](cfg, shape)
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
