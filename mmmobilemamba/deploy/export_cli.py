"""The command line of ``tools/deployment/export.py`` (and its per-runtime
aliases ``export_onnx.py`` and ``export_executorch.py``).

    python tools/deployment/export.py CONFIG CKPT OUT --target onnx|xnnpack
        [--shape H [W]] [--features [--out-indices 1 2 3]]
        [--int8 --calib-dir DIR [--calib-num 64] [--quantize-ss2d]]
        [--dynamic-batch] [--batch N] [--opset 17] [--no-check]
        [--native-scan] [--cfg-options k=v ...] [--trust-checkpoint]

* The whole model, chosen by the config's task
  (:func:`mmmobilemamba.deploy.dense.deployable`): a classifier gives
  ``logits``; a segmentor (DeepLabv3, Semantic FPN, PSPNet) the label map
  ``labels`` (N, H, W) int64, resized to the input and argmax'd in the
  graph; a detector (RetinaNet, SSD/SSDLite) ``dets`` (N, 5) and
  ``labels`` (N,) with box decoding and per-class NMS in the ONNX graph
  (batch 1), or, for ``.pte``, the decoded ``boxes`` and ``scores`` of
  every anchor, finished on the host by ``deploy/host.py``. A head with no
  export path is an error that names it. ``--features``: the backbone
  alone, one output per index of ``--out-indices`` (default 1 2 3, strides
  16/32/64).
* The input is the normalised image; the normalisation, input size,
  keep-ratio, class names and output format go to ``OUT.json`` beside the
  model (``deploy/host.py`` and ``tools/deployment/infer.py`` read it).
  Default size: the classifier's test crop; a detector's or segmentor's
  test ``Resize`` scale, rounded up to the preprocessor's divisor.
* The model is converted for the target
  (:func:`mmmobilemamba.deploy.convert`: BatchNorms folded, standard-op
  forms, the doubling scan, no custom operator) and written by
  :func:`mmmobilemamba.deploy.export`. ``--native-scan`` (opt in): each
  SS2D scan is one custom operator instead (targets ``onnx-native`` /
  ``xnnpack-native``), which runs only where the runtime has loaded
  :func:`mmmobilemamba.deploy.native.native_library`'s library.
* ``--int8 --calib-dir DIR``: post-training int8, calibrated on
  ``--calib-num`` images through the config's test pipeline. ONNX: static
  QDQ for onnxruntime, the float model kept as OUT_fp32.onnx. XNNPACK: pt2e
  quantization; SS2D stays in float unless ``--quantize-ss2d``, except with
  ``--native-scan``: the scan, its norm and gate are the float native
  operator there, and SS2D's projections are quantized (XNNPACK cannot
  run the native program with them in float at some input sizes).
* After writing, OUT runs in its runtime and is compared with PyTorch:
  fp32 must agree within ``1e-4 * max(1, max |output|)`` (classifier,
  features, ``.pte`` dense outputs), on every label except ties (top-2
  logits within 1e-4) for segmentors, and detection by detection (boxes
  within 1e-3 px, score ties matched as sets) for detectors; exit code 1
  otherwise. int8 reports the agreement with fp32 PyTorch.
"""
import argparse
import sys
import time
from typing import Optional, Sequence

import torch

#: fp32 parity tolerance, relative to max(1, largest |output|).
TOLERANCE = 1e-4
#: Export target -> the runtime that runs its files.
RUNTIME = {'onnx': 'onnxruntime', 'xnnpack': 'executorch'}


def parse_args(argv: Optional[Sequence[str]] = None,
               target: Optional[str] = None) -> argparse.Namespace:
    """Arguments; ``target`` fixes ``--target`` (the per-runtime aliases)."""
    from mmengine.config import DictAction

    from mmmobilemamba.checkpoint import add_trust_argument
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument('out', help='file to write (.onnx or .pte)')
    if target is None:
        parser.add_argument('--target', required=True, choices=sorted(RUNTIME))
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        metavar='H [W]',
                        help="input size; default: the config's test crop")
    parser.add_argument('--features', action='store_true',
                        help="export the backbone's multi-scale features")
    parser.add_argument('--out-indices', type=int, nargs='+',
                        default=[1, 2, 3],
                        help='backbone features (0 = stem, 1-3 = stages)')
    parser.add_argument('--int8', action='store_true',
                        help='int8 post-training quantization')
    parser.add_argument('--calib-dir', help='images to calibrate on (--int8)')
    parser.add_argument('--calib-num', type=int, default=64,
                        help='calibration images, evenly spread over the '
                        'sorted files (default 64)')
    parser.add_argument('--quantize-ss2d', action='store_true',
                        help='xnnpack int8: quantize SS2D too (default: '
                        'kept in float; with --native-scan always '
                        'quantized around the float scan operator)')
    parser.add_argument('--dynamic-batch', action='store_true',
                        help='onnx: symbolic batch dimension')
    parser.add_argument('--batch', type=int, default=1,
                        help='onnx: batch size of the traced input')
    parser.add_argument('--opset', type=int, default=17, help='onnx opset')
    parser.add_argument('--native-scan', action='store_true',
                        help="each SS2D scan as one custom operator, run by "
                        "the runtime's native kernel library (see "
                        "mmmobilemamba.deploy.native_library)")
    parser.add_argument('--no-check', action='store_true',
                        help='skip the runtime comparison')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if target is not None:
        args.target = target
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    if args.batch < 1:
        parser.error(f'--batch must be >= 1, got {args.batch}')
    if args.int8 and not args.calib_dir:
        parser.error('--int8 needs --calib-dir DIR (calibration images)')
    if args.calib_dir and not args.int8:
        parser.error('--calib-dir is only used with --int8')
    if args.calib_num < 1:
        parser.error(f'--calib-num must be >= 1, got {args.calib_num}')
    if args.target == 'xnnpack' and (args.dynamic_batch or args.batch != 1):
        parser.error('ExecuTorch programs are exported at batch 1; '
                     '--dynamic-batch and --batch are for --target onnx')
    if args.quantize_ss2d and not (args.int8 and args.target == 'xnnpack'):
        parser.error('--quantize-ss2d is for --target xnnpack --int8')
    #: what deploy.export writes: the target, or its native-scan variant
    args.export_target = args.target + ('-native' if args.native_scan else '')
    return args


def main(argv: Optional[Sequence[str]] = None,
         target: Optional[str] = None) -> int:
    args = parse_args(argv, target)
    from mmmobilemamba.models.ss2d import SS2D
    from . import calibration, dense
    from .export import export
    from .model_source import Features, load_model
    from .runtimes import require_runtime
    try:
        if args.target == 'xnnpack' or args.int8 or not args.no_check:
            require_runtime(RUNTIME[args.target])  # names a missing package
        if args.native_scan:  # before the slow export: is it buildable?
            from .native import native_library
            native_library(RUNTIME[args.target])
        model, cfg = load_model(
            args.config, args.checkpoint, args.cfg_options,
            out_indices=args.out_indices if args.features else None,
            trust_checkpoint=args.trust_checkpoint)
        task = 'features' if args.features else dense.task_of(model)
        size = export_size(cfg, args.shape, task)
        if task == 'detection' and (args.dynamic_batch or args.batch != 1):
            raise ValueError('detectors are exported at batch 1 (the NMS '
                             'graph); drop --dynamic-batch / --batch')
        if args.features:
            dep = dense.Deployable(
                Features(model.backbone).eval(), 'features',
                [f'feat{i}' for i in range(len(args.out_indices))],
                'features')
        else:
            dep = dense.deployable(model, args.target, size)
        calib = None
        if args.int8:  # read (and fail) before the slow export
            calib = calibration.load_images(without_annotations(cfg),
                                            args.calib_dir, args.calib_num,
                                            size)
    except NotImplementedError as err:
        print(f'error: no export path: {err}', file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, KeyError, RuntimeError,
            ImportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    module, names = dep.module.eval(), dep.output_names
    if not any(isinstance(m, SS2D) for m in module.modules()):
        print('note: the model has no selective scan (not a MobileMamba?)')
    start = time.perf_counter()
    try:
        done = export(module, args.export_target,
                      torch.randn(args.batch, 3, *size),
                      args.out, output_names=names,
                      dynamic_batch=args.dynamic_batch, opset=args.opset,
                      calibration=calib,
                      float_types=() if args.quantize_ss2d or args.native_scan
                      else (SS2D, ))
    except RuntimeError as err:  # e.g. an int8 program XNNPACK cannot run
        print(f'error: {err}', file=sys.stderr)
        return 1
    kind = 'fp32'
    if calib is not None:
        kind = f'int8 (calibrated on {len(calib)} images'
        if args.target == 'xnnpack':
            kind += '; SS2D ' + (
                'projections quantized, scan in float' if args.native_scan
                else 'quantized' if args.quantize_ss2d else 'in float')
        kind += ')'

    shape = (f'(N, 3, {size[0]}, {size[1]}) N symbolic' if args.dynamic_batch
             else f'({args.batch}, 3, {size[0]}, {size[1]})')
    print(f'wrote {done.path} ({done.num_bytes / 2**20:.2f} MiB, {kind}) in '
          f'{time.perf_counter() - start:.0f} s: {dep.task}, input {shape}; '
          f'outputs {names} ({dep.output_format})')
    if done.fp32_path:
        print(f'float model: {done.fp32_path}')
    if dep.task != 'features':
        # a native file names the runtime whose native library it needs
        extra = ({'native_scan': RUNTIME[args.target]} if args.native_scan
                 else None)
        meta = dense.write_metadata(
            done.path, cfg, model, dep, size,
            batch=-1 if args.dynamic_batch else args.batch,
            precision='int8' if calib is not None else 'fp32', extra=extra)
        if done.fp32_path:
            dense.write_metadata(done.fp32_path, cfg, model, dep, size,
                                 batch=-1 if args.dynamic_batch else
                                 args.batch, extra=extra)
        print(f'metadata: {meta}')
    if done.delegation is not None:
        from .xnnpack import delegation_report
        print(delegation_report(done.delegation))
    mean, std, to_rgb = calibration.normalisation(cfg)
    print(f'feed {"RGB" if to_rgb else "BGR"} images normalised with mean '
          f'{mean} and std {std}')
    if args.no_check:
        return 0
    if dep.task in ('detection', 'segmentation'):
        return check_dense(dep, done, args, size, calib)
    return check(module, done, args, size, calib)


def without_annotations(cfg):
    """A copy of ``cfg`` whose test/val pipelines load no annotations
    (calibration images have none; mmseg's loader would fail on that)."""
    import copy
    cfg = copy.deepcopy(cfg)
    for key in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset')
        while dataset is not None and 'pipeline' not in dataset and \
                isinstance(dataset.get('dataset'), dict):
            dataset = dataset['dataset']
        if dataset is not None and dataset.get('pipeline'):
            dataset['pipeline'] = [
                step for step in dataset['pipeline']
                if 'LoadAnnotations' not in str(step.get('type', ''))]
    return cfg


def export_size(cfg, shape, task: str):
    """(H, W) of the export: ``--shape``, else the classifier's test crop
    (224 without one), else a dense model's test resize; a dense model's
    size must be a multiple of its preprocessor's divisor."""
    from . import dense
    from .model_source import input_size
    if task not in ('detection', 'segmentation'):
        return input_size(cfg, shape)
    if shape:
        size = (int(shape[0]), int(shape[-1]))
    else:
        size = dense.default_size(cfg) or input_size(cfg, None)
    div = dense.size_divisor(cfg)
    if size[0] % div or size[1] % div:
        raise ValueError(f'--shape {size[0]} {size[1]}: a {task} model of '
                         f'this config takes sizes that are multiples of '
                         f'{div} (its data preprocessor pads to them)')
    return size


def check(module: torch.nn.Module, done, args: argparse.Namespace,
          size, calib: Optional[torch.Tensor]) -> int:
    """Run the written files in their runtime and compare with PyTorch: the
    fp32 file (for int8 ONNX, the float model beside it) must agree within
    :data:`TOLERANCE` (else exit code 1); an int8 file is summarised."""
    from . import runtimes
    runtime = RUNTIME[args.target]
    batch = args.batch if not args.dynamic_batch else 1
    fp32 = done.fp32_path if calib is not None else done.path
    code = 0
    if fp32 is not None:
        runner = runtimes.make_runner(runtime, fp32)
        gen = torch.Generator().manual_seed(0)
        worst = 0.
        for n in ((1, 3) if args.dynamic_batch else (batch, )):
            inputs = torch.randn(max(n, 2), 3, *size, generator=gen)
            diff = runtimes.worst_difference(
                runtimes.torch_outputs(module, inputs),
                runtimes.run_batched(runner, inputs, n))
            print(f'parity batch {n}: {diff:.3g}')
            worst = max(worst, diff)
        code = runtimes.report_parity(runtime, worst, TOLERANCE)
    if calib is not None:
        runner = runtimes.make_runner(runtime, done.path)
        ref = runtimes.torch_outputs(module, calib)
        got = runtimes.run_batched(runner, calib, batch)
        print(f'int8 {runtime} vs fp32 PyTorch: ' + runtimes.int8_summary(
            ref, got, classifier=not args.features))
    return code


def check_dense(dep, done, args: argparse.Namespace, size,
                calib: Optional[torch.Tensor]) -> int:
    """A segmentor's or detector's file against PyTorch (exit code): the
    fp32 file (for int8 ONNX, the float model beside it) label by label,
    ties skipped, or detection by detection, ties matched as sets
    (:mod:`.dense.parity`); must agree, else exit code 1. An int8 file is
    summarised on the calibration images."""
    from . import runtimes
    runtime = RUNTIME[args.target]
    fp32 = done.fp32_path if calib is not None else done.path
    code = 0
    if fp32 is not None:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(2, 3, *size, generator=gen)
        bad, lines = compare_dense(dep, runtimes.make_runner(runtime, fp32),
                                   images)
        for line in lines:
            print(f'fp32 {runtime} vs PyTorch: {line}')
        if bad:
            print(f'error: {runtime} output differs from PyTorch',
                  file=sys.stderr)
            code = 1
    if calib is not None:
        _, lines = compare_dense(dep, runtimes.make_runner(runtime,
                                                           done.path), calib)
        for line in lines:
            print(f'int8 {runtime} vs fp32 PyTorch: {line}')
    return code


def compare_dense(dep, runner, images: torch.Tensor):
    """(differs, report lines) of ``runner`` against ``dep.module`` on
    ``images``, one at a time."""
    from . import runtimes
    from .dense import DetectorNMS, parity
    from .host import detections_from_dense
    lines = []
    if dep.task == 'segmentation':
        compared = differ = ties = 0
        for img in images:
            with torch.no_grad():
                logits = dep.module.logits(img[None])
            c, d, t = parity.label_agreement(
                logits.argmax(1).numpy(), runner(img[None])[0],
                logits[0].numpy())
            compared, differ, ties = compared + c, differ + d, ties + t
        share = 100. * (1 - differ / max(1, compared))
        lines.append(f'label agreement {share:.3f} % of {compared} pixels '
                     f'({differ} differ; {ties} ties skipped)')
        return differ > 0, lines
    post = dep.postprocess
    keys = ('score_thr', 'nms_pre', 'iou_thr', 'max_per_img',
            'min_bbox_size')
    ref_module = dep.module
    if dep.output_format == 'boxes_scores':
        ref_module = DetectorNMS(dep.module, **{k: post[k] for k in keys})
    bad, worst_dense = False, 0.
    for i, img in enumerate(images):
        with torch.no_grad():
            ref = [t.numpy() for t in ref_module(img[None])]
        outs = runner(img[None])
        if dep.output_format == 'boxes_scores':
            with torch.no_grad():
                ref_dense = [o.numpy() for o in dep.module(img[None])]
            worst_dense = max(worst_dense, runtimes.worst_difference(
                ref_dense, outs))
            outs = detections_from_dense(outs[0], outs[1], post['levels'],
                                         *[post[k] for k in keys])
        result = parity.compare_detections(ref[0], ref[1], outs[0], outs[1],
                                           post['max_per_img'])
        line = f'image {i}: ' + parity.describe_detections(result)
        bad = bad or not parity.detections_agree(result)
        if len(ref) > 2:  # instance masks
            compared, differ = parity.mask_difference(*ref[:3], *outs[:3])
            line += (f'; mask pixels differing {differ} of {compared}')
            bad = bad or differ > 1e-3 * max(1, compared)
        lines.append(line)
    if dep.output_format == 'boxes_scores':
        lines.append(f'boxes/scores worst difference {worst_dense:.3g}')
        bad = bad or worst_dense > TOLERANCE
    return bad, lines
