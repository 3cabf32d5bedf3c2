"""Export a MobileMamba classifier, or its backbone's features, as an
ExecuTorch program delegated to XNNPACK (fp32 or int8).

    python tools/deployment/export_executorch.py CONFIG CKPT OUT.pte [--fuse]
        [--int8 --calib-dir DIR [--calib-num 64] [--quantize-ss2d]]
        [--shape H [W]] [--features] [--out-indices 1 2 3] [--no-check]
        [--cfg-options k=v ...]

* Default: the classifier, normalised image (1, 3, H, W) -> logits
  (1, classes); ``--features``: the backbone, image -> one map per index of
  ``--out-indices``. Normalisation (the config's data preprocessor) and
  everything after the exported part stay on the host.
* ``--fuse`` folds every BatchNorm first (deploy mode).
* ``--int8``: post-training quantization with ExecuTorch's
  ``XNNPACKQuantizer`` (symmetric int8, per-channel weights), calibrated on
  ``--calib-num`` images read from ``--calib-dir`` through the config's test
  pipeline. The SS2D modules (the selective scan with its projections) stay
  in float unless ``--quantize-ss2d``.

The model is loaded as ``export_onnx.py`` loads it, and the selective scan
is exported through the same ``'export'`` backend. After writing OUT the
tool loads it in ExecuTorch's runtime and compares it with the PyTorch model
(default scan backend): fp32 must agree within ``1e-4 * max(1, max
|output|)`` (exit 1 otherwise); int8 reports the top-1 agreement with fp32
PyTorch on the calibration images and the largest logit difference. It also
prints the share of operators that XNNPACK runs and lists the others.

CKPT is read as ``export_onnx.py`` reads it: without unpickling arbitrary
objects, unless ``--trust-checkpoint`` (passed on to that loader) is given
for a file you trust.
"""
import argparse
import copy
import os.path as osp
import sys
import time
from typing import Optional, Sequence

import torch

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:  # export_onnx.py beside it, also when imported
    sys.path.insert(0, HERE)

import export_onnx  # noqa: E402  (model loading shared with the ONNX tool)

#: fp32 parity tolerance, relative to max(1, largest |output|).
TOLERANCE = export_onnx.TOLERANCE


def parse_args(argv: Optional[Sequence[str]] = None):
    """(own arguments, the namespace export_onnx's loader expects)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Other options (--cfg-options k=v ...) are those of '
        'export_onnx.py and are passed to its model loader.')
    parser.add_argument('config', help='classifier config')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument('out', help='.pte file to write')
    parser.add_argument('--fuse', action='store_true',
                        help='fold BatchNorms before exporting')
    parser.add_argument('--int8', action='store_true',
                        help='int8 post-training quantization')
    parser.add_argument('--calib-dir', help='images to calibrate on')
    parser.add_argument('--calib-num', type=int, default=64,
                        help='calibration images, evenly spread over the '
                        'sorted files (default 64)')
    parser.add_argument('--quantize-ss2d', action='store_true',
                        help='quantize SS2D too (default: kept in float)')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        metavar='H [W]',
                        help="input size; default: the config's test crop")
    parser.add_argument('--features', action='store_true',
                        help="export the backbone's multi-scale features")
    parser.add_argument('--out-indices', type=int, nargs='+',
                        default=[1, 2, 3])
    parser.add_argument('--no-check', action='store_true',
                        help='skip the runtime comparison')
    args, rest = parser.parse_known_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    if args.int8 and not args.calib_dir:
        parser.error('--int8 needs --calib-dir DIR (calibration images)')
    if args.calib_dir and not args.int8:
        parser.error('--calib-dir is only used with --int8')
    if args.calib_num < 1:
        parser.error(f'--calib-num must be >= 1, got {args.calib_num}')
    forwarded = [args.config, args.checkpoint, args.out + '.onnx'] + rest
    if args.fuse:
        forwarded.append('--fuse')
    if args.features:
        forwarded += ['--features', '--out-indices'] + [
            str(i) for i in args.out_indices]
    if args.shape:
        forwarded += ['--shape'] + [str(s) for s in args.shape]
    return args, export_onnx.parse_args(forwarded)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, load_args = parse_args(argv)
    from mmmobilemamba.deploy import calibration, runtimes, xnnpack
    from mmmobilemamba.models.ss2d import SS2D
    try:
        model, cfg = export_onnx.build(load_args)
        size = export_onnx.input_size(load_args, cfg)
        calib = None
        if args.int8:
            calib = calibration.load_images(cfg, args.calib_dir,
                                            args.calib_num, size)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if args.features:
        module: torch.nn.Module = export_onnx._Features(model.backbone)
    else:
        module = export_onnx._Logits(model)
    module.eval()
    reference = copy.deepcopy(module)  # the model as users run it
    if export_onnx.set_scan_backend(module, export_onnx.EXPORT_BACKEND) == 0:
        print('note: the model has no selective scan (not a MobileMamba?)')
    x = torch.randn(1, 3, *size)
    float_types = () if args.quantize_ss2d else (SS2D, )
    start = time.perf_counter()
    manager, report = xnnpack.export_program(module, x, calib, float_types)
    nbytes = xnnpack.save(manager, args.out)
    kind = 'fp32'
    if args.int8:
        kind = (f'int8 (calibrated on {len(calib)} images; SS2D '
                f'{"quantized" if args.quantize_ss2d else "in float"})')
    print(f'wrote {args.out} ({nbytes / 2**20:.2f} MiB, {kind}) in '
          f'{time.perf_counter() - start:.0f} s: input (1, 3, {size[0]}, '
          f'{size[1]}), {"features" if args.features else "logits"}; '
          f'fused={args.fuse}')
    print(xnnpack.delegation_report(report))
    mean, std, to_rgb = calibration.normalisation(cfg)
    print(f'feed {"RGB" if to_rgb else "BGR"} images normalised with mean '
          f'{mean} and std {std}')
    if args.no_check:
        return 0
    runner = runtimes.make_runner('executorch', args.out)
    if args.int8:
        ref = runtimes.torch_outputs(reference, calib)
        got = runtimes.run_batched(runner, calib, 1)
        print('int8 .pte vs fp32 PyTorch: ' + runtimes.int8_summary(
            ref, got, classifier=not args.features))
        return 0
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 3, *size, generator=gen)
    worst = runtimes.worst_difference(
        runtimes.torch_outputs(reference, inputs),
        runtimes.run_batched(runner, inputs, 1))
    return runtimes.report_parity('ExecuTorch', worst, TOLERANCE)


if __name__ == '__main__':
    sys.exit(main())
