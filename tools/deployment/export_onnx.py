"""Export a MobileMamba classifier, or its backbone's features, to ONNX.

    python tools/deployment/export_onnx.py CONFIG CKPT OUT.onnx [--fuse]
        [--dynamic-batch] [--shape H [W]] [--batch N] [--features]
        [--out-indices 1 2 3] [--opset 17] [--cfg-options k=v ...]
        [--int8 --calib-dir DIR [--calib-num 64]]
        [--trust-checkpoint]

* Default: the classifier, normalised image (N, 3, H, W) -> logits
  (N, classes). Normalisation (the config's ``data_preprocessor`` mean/std,
  RGB) is not in the graph; the tool prints the values to apply.
* ``--features``: the backbone alone, image -> one output per index of
  ``--out-indices`` (default 1 2 3, strides 16/32/64: what detection and
  segmentation heads read).
* ``--fuse`` folds every BatchNorm first (deploy mode; CKPT is unfused).
* ``--dynamic-batch`` keeps the batch dimension symbolic; H and W are fixed
  to ``--shape`` (the scan's graph is specialised to the sequence length).
* ``--int8 --calib-dir DIR [--calib-num N]``: OUT is also quantized for
  onnxruntime (static QDQ, per-channel int8 weights, uint8 activations
  calibrated on N images read through the config's test pipeline; only
  Conv/MatMul/Gemm: :mod:`mmmobilemamba.deploy.quantize_onnx`). OUT is the
  int8 model, OUT_fp32.onnx the float one; the tool reports the int8
  model's top-1 agreement with fp32 PyTorch on the calibration images and
  the largest logit difference.

The selective scan is exported through the ``'export'`` backend
(:mod:`mmmobilemamba.ops.selective_scan.export_scan`): a log-depth doubling
scan of standard ONNX ops (Pad, Slice, Mul, Add, Exp, Softplus), so any
ONNX runtime runs it; no custom operator. After writing OUT the tool runs
it with onnxruntime and compares it with the PyTorch model (default scan
backend) at two batch sizes (1 and 3 with ``--dynamic-batch``, else the
exported batch): the largest absolute difference must be within
``1e-4 * max(1, max |PyTorch output|)``, otherwise the tool exits with 1.

CKPT loads without unpickling arbitrary objects (``--trust-checkpoint``
lifts that for a file you trust).
"""
import argparse
import copy
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn


from mmmobilemamba.models.ss2d import set_scan_backend  # noqa: E402

#: Parity tolerance, relative to max(1, largest |output|).
TOLERANCE = 1e-4
#: The scan formulation that lowers to standard ONNX ops.
EXPORT_BACKEND = 'export'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='classifier config')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument('out', help='ONNX file to write')
    parser.add_argument('--fuse', action='store_true',
                        help='fold BatchNorms before exporting')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='symbolic batch dimension')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        metavar='H [W]',
                        help="input size; default: the config's test crop")
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the traced input')
    parser.add_argument('--features', action='store_true',
                        help="export the backbone's multi-scale features")
    parser.add_argument('--out-indices', type=int, nargs='+',
                        default=[1, 2, 3],
                        help='backbone features to export (0 = stem, 1-3 = '
                        'stages) with --features')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--no-check', action='store_true',
                        help='skip the onnxruntime parity check')
    parser.add_argument('--int8', action='store_true',
                        help='also write OUT with int8 static quantization '
                        '(QDQ; the fp32 model goes to OUT_fp32.onnx)')
    parser.add_argument('--calib-dir', help='images to calibrate on (--int8)')
    parser.add_argument('--calib-num', type=int, default=64,
                        help='calibration images (default 64)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    from mmmobilemamba.checkpoint import add_trust_argument
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    if args.batch < 1:
        parser.error(f'--batch must be >= 1, got {args.batch}')
    if args.int8 and not args.calib_dir:
        parser.error('--int8 needs --calib-dir DIR (calibration images)')
    if args.calib_dir and not args.int8:
        parser.error('--calib-dir is only used with --int8')
    return args


class _Logits(nn.Module):
    """Classifier in tensor mode: image -> logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x, mode='tensor')


class _Features(nn.Module):
    """Backbone: image -> tuple of feature maps."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x))


def build(args: argparse.Namespace):
    """The loaded (and optionally fused) model in eval mode and its cfg."""
    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    from mmmobilemamba.checkpoint import trust_checkpoints
    from mmmobilemamba.models.fusion import fuse_bn
    for path, what in ((args.config, 'config'), (args.checkpoint,
                                                 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} {path} not found')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.model.get('type') == 'MobileMambaLoRA':
        raise ValueError(
            f'{args.config} is a LoRA config; fold the adapters into the base '
            'weights first (tools/model_converters/merge_lora.py CONFIG CKPT '
            'OUT --out-config OUT.py) and export OUT with OUT.py')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('train_cfg', None)
    backbone_cfg = model_cfg.get('backbone')
    if backbone_cfg is None:
        raise ValueError(f'{args.config} has no model.backbone')
    backbone_cfg['init_cfg'] = None  # the weights come from CKPT
    if args.features:
        backbone_cfg['out_indices'] = tuple(args.out_indices)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        model = MODELS.build(model_cfg)
    # A feature export ignores the head; everything else must match.
    with trust_checkpoints(args.trust_checkpoint):
        load_checkpoint(model, args.checkpoint, map_location='cpu',
                        strict=not args.features)
    model.eval()
    if args.fuse:
        fuse_bn(model)
    return model, cfg


def input_size(args: argparse.Namespace, cfg) -> Tuple[int, int]:
    """--shape, else the config's test crop, else 224 x 224."""
    if args.shape is not None:
        return args.shape[0], args.shape[-1]
    from mmmobilemamba.config_sizes import test_crop_size
    return test_crop_size(cfg) or (224, 224)


def export(module: nn.Module, x: torch.Tensor, out: str, num_outputs: int,
           dynamic_batch: bool, opset: int) -> List[str]:
    """Write ``module`` traced on ``x`` to ``out``; return output names."""
    names = (['logits'] if num_outputs == 1 and isinstance(module, _Logits)
             else [f'feat{i}' for i in range(num_outputs)])
    axes = None
    if dynamic_batch:
        axes = {name: {0: 'batch'} for name in ['input'] + names}
    # The TorchScript-based exporter: the 'export' scan is plain tensor code
    # that it traces into a static graph with a symbolic batch dimension.
    with torch.no_grad():
        torch.onnx.export(module, (x, ), out, dynamo=False,
                          opset_version=opset, input_names=['input'],
                          output_names=names, dynamic_axes=axes,
                          do_constant_folding=True)
    return names


def parity(module: nn.Module, path: str, batches: Sequence[int],
           size: Tuple[int, int]) -> float:
    """Worst |onnxruntime - PyTorch| / max(1, max |PyTorch|) over batches
    and outputs; prints each comparison."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(0)
    worst = 0.
    for batch in batches:
        x = torch.randn(batch, 3, *size, generator=gen)
        with torch.no_grad():
            ref = module(x)
        refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        outs = session.run(None, {'input': x.numpy()})
        if len(outs) != len(refs):
            raise RuntimeError(f'ONNX model returns {len(outs)} outputs, '
                               f'PyTorch {len(refs)}')
        for i, (o, r) in enumerate(zip(outs, refs)):
            r = r.numpy()
            if o.shape != r.shape:
                raise RuntimeError(f'output {i} at batch {batch}: ONNX shape '
                                   f'{o.shape} != PyTorch {r.shape}')
            diff = float(np.abs(o - r).max())
            scale = max(1., float(np.abs(r).max()))
            worst = max(worst, diff / scale)
            print(f'parity batch {batch} output {i} {tuple(o.shape)}: max '
                  f'|onnxruntime - pytorch| = {diff:.3g} '
                  f'(max |pytorch| {float(np.abs(r).max()):.3g})')
    return worst


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        model, cfg = build(args)
        size = input_size(args, cfg)
        calib = None
        if args.int8:  # read (and fail) before the slow export
            from mmmobilemamba.deploy.calibration import load_images
            calib = load_images(cfg, args.calib_dir, args.calib_num, size)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    int8_out = None
    if args.int8:
        int8_out = args.out
        args.out = osp.splitext(args.out)[0] + '_fp32.onnx'
    if args.features:
        module: nn.Module = _Features(model.backbone)
        num_outputs = len(model.backbone.out_indices)
    else:
        module = _Logits(model)
        num_outputs = 1
    module.eval()
    reference = copy.deepcopy(module)  # the model as users run it
    if set_scan_backend(module, EXPORT_BACKEND) == 0:
        print('note: the model has no selective scan (not a MobileMamba?)')
    x = torch.randn(args.batch, 3, *size)
    names = export(module, x, args.out, num_outputs, args.dynamic_batch,
                   args.opset)
    print(f'wrote {args.out}: input "input" (N, 3, {size[0]}, {size[1]}) '
          f'{"N symbolic" if args.dynamic_batch else f"N = {args.batch}"}, '
          f'outputs {names}; fused={args.fuse}')
    pre = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor')
    if pre and 'mean' in pre:
        print(f'feed RGB images normalised with mean {list(pre["mean"])} '
              f'and std {list(pre["std"])}')
    if int8_out is not None:
        from mmmobilemamba.deploy.quantize_onnx import report_int8
        report_int8(reference, args.out, int8_out, calib,
                    classifier=not args.features, check=not args.no_check)
    if args.no_check:
        return 0
    batches = (1, 3) if args.dynamic_batch else (args.batch, )
    worst = parity(reference, args.out, batches, size)
    from mmmobilemamba.deploy.runtimes import report_parity
    return report_parity('onnxruntime', worst, TOLERANCE)


if __name__ == '__main__':
    sys.exit(main())
