"""Batch-1 latency of MobileMamba-T2 against MobileNetV3-Large in the mobile
runtimes: ExecuTorch (XNNPACK delegate) and onnxruntime, fp32 and int8.

    python tools/analysis_tools/benchmark_deploy.py [--threads 1 2]
        [--rounds 5] [--iters 20] [--work-dir work_dirs/benchmark_deploy]
        [--calib-dir DIR] [--calib-num 32] [--reuse] [--scan-stand-in]
        [--native-scan]

Both models are built from their configs with random weights and random
BatchNorm statistics (speed does not depend on the values; nothing is
downloaded): T2 from ``configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py``
at 192, MobileNetV3-Large from mmpretrain's ``mobilenet-v3-large_8xb128_in1k``
at 224. Each goes the route of ``tools/deployment/export.py``,
:func:`mmmobilemamba.deploy.export`: ``--target xnnpack`` (fp32; int8 with
XNNPACKQuantizer, per-channel, SS2D kept in float) and ``--target onnx``
(fp32; int8 static QDQ of Conv/MatMul/Gemm). The int8 models are calibrated on
``--calib-num`` images from ``--calib-dir`` (default: procedurally drawn
shapes written to the work dir), read through T2's test pipeline and
resized to each model's input.

Timing: for each thread count, all eight programs are loaded in this one
process and run in interleaved rounds (each round times ``--iters`` single
forwards of every program in turn), so that machine load affects all
alike. onnxruntime's threads do not spin between runs
(``session.intra_op.allow_spinning=0``); ExecuTorch's threadpool is resized
per thread count. The table gives the median and 90th percentile latency,
the file size and T2 / MobileNetV3-Large.

``--scan-stand-in`` also exports T2 in fp32 with every selective scan
replaced by a zero-cost stand-in (y = u) and times it in the same rounds:
what T2 would cost in each runtime if its scan were free.

``--native-scan`` also exports T2 with the native scan (targets
``xnnpack-native`` and ``onnx-native``, fp32 and int8: each scan one
custom operator, with SS2D's norm and gate, run by the runtime's kernel
library, :func:`mmmobilemamba.deploy.native_library`; int8 ``.pte``: SS2D's
projections quantized, as ``export.py --native-scan`` does) and times it in the same
rounds; with ``--scan-stand-in`` too, the scan's share of the native
programs' time is printed.

``--dense`` times whole detectors and segmentors instead (SSDLite-320 and
DeepLabv3 with T2 against mmdet's SSDLite-MobileNetV2-320 and mmseg's
DeepLabv3-MobileNetV2, post-processing in the files as the export tool
writes them): :mod:`mmmobilemamba.deploy.dense.bench`.
"""
import argparse
import os
import os.path as osp
import runpy
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

T2_CONFIG = osp.join(REPO, 'configs', 'mobilemamba',
                     'mobilemamba-t2_8xb128_in1k.py')
MODELS = (('T2@192', 192), ('MobileNetV3-Large@224', 224))
STAND_IN = 'T2@192, zero-cost scan'
NATIVE = 'T2@192, native scan'
PEER = 'mobilenet-v3-large_8xb128_in1k'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--iters', type=int, default=20,
                        help='single forwards per program and round')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_deploy')
    parser.add_argument('--calib-dir', default=None)
    parser.add_argument('--calib-num', type=int, default=32)
    parser.add_argument('--reuse', action='store_true',
                        help='time the files already in --work-dir')
    parser.add_argument('--scan-stand-in', action='store_true',
                        help='also time T2 (fp32) with a zero-cost scan')
    parser.add_argument('--native-scan', action='store_true',
                        help='also time T2 exported with the native scan '
                        'kernels (targets xnnpack-native, onnx-native)')
    parser.add_argument('--dense', action='store_true',
                        help='whole detectors and segmentors instead: '
                        'SSDLite-320 and DeepLabv3, T2 against MobileNetV2 '
                        '(mmmobilemamba.deploy.dense.bench)')
    return parser.parse_args(argv)


def build_models() -> Dict[str, torch.nn.Module]:
    """name -> eval-mode module taking an image and returning logits."""
    from mmmobilemamba.analysis.timing import build_model, build_peer
    from mmmobilemamba.deploy.model_source import Logits
    t2, _, _ = build_model(T2_CONFIG)
    return {MODELS[0][0]: Logits(t2).eval(),
            MODELS[1][0]: Logits(build_peer(PEER)).eval()}


def calibration_images(args, size: int) -> torch.Tensor:
    from mmengine.config import Config

    from mmmobilemamba.deploy.calibration import load_images
    folder = args.calib_dir
    if folder is None:
        make_imagenet_folder = runpy.run_path(osp.join(
            REPO, 'tools', 'dataset_converters',
            'make_imagenet_folder.py'))['make_imagenet_folder']
        root = osp.join(args.work_dir, 'calib_shapes')
        folder = osp.join(root, 'val')
        if not osp.isdir(folder):
            make_imagenet_folder(root, num_train_per_class=0,
                                 num_val_per_class=max(
                                     1, -(-args.calib_num // 10)),
                                 image_size=224)
    return load_images(Config.fromfile(T2_CONFIG), folder, args.calib_num,
                       (size, size))


def export_all(args) -> Dict[str, str]:
    """Write the eight files; return (model, runtime, precision) -> path."""
    from mmmobilemamba.deploy import export
    from mmmobilemamba.deploy.export import float_onnx_path
    from mmmobilemamba.deploy.xnnpack import delegation_report
    from mmmobilemamba.models.ss2d import SS2D
    models = build_models()
    paths = {}
    for (name, size) in MODELS:
        stem = osp.join(args.work_dir, name.split('@')[0].lower())
        files = {('executorch', 'fp32'): stem + '_fp32.pte',
                 ('executorch', 'int8'): stem + '_int8.pte',
                 # one int8 export writes the float model beside it
                 ('onnxruntime', 'fp32'): float_onnx_path(stem + '_int8.onnx'),
                 ('onnxruntime', 'int8'): stem + '_int8.onnx'}
        for key, path in files.items():
            paths[(name, ) + key] = path
        if args.reuse and all(osp.isfile(p) for p in files.values()):
            continue
        module = models[name]
        x = torch.randn(1, 3, size, size)
        calib = calibration_images(args, size)
        for precision in ('fp32', 'int8'):
            start = time.perf_counter()
            done = export(module, 'xnnpack', x,
                          files[('executorch', precision)],
                          calibration=calib if precision == 'int8' else None,
                          float_types=(SS2D, ))
            print(f'{name} {precision} .pte in '
                  f'{time.perf_counter() - start:.0f} s; '
                  + delegation_report(done.delegation).replace('\n', '; '))
        export(module, 'onnx', x, files[('onnxruntime', 'int8')],
               calibration=calib)
        print(f'{name}: .onnx fp32 and int8 written')
    if args.scan_stand_in:
        paths.update(export_stand_in(args, models[MODELS[0][0]]))
    if args.native_scan:
        paths.update(export_native(args, models[MODELS[0][0]]))
    return paths


def export_native(args, t2: torch.nn.Module) -> Dict[tuple, str]:
    """T2 with the native scan, fp32 and int8, for both runtimes."""
    from mmmobilemamba.deploy import export, native_library
    from mmmobilemamba.deploy.export import float_onnx_path
    for runtime in ('executorch', 'onnxruntime'):
        native_library(runtime)  # a clear error before the slow exports
    stem = osp.join(args.work_dir, 't2_native')
    paths = {(NATIVE, 'executorch', 'fp32'): stem + '_fp32.pte',
             (NATIVE, 'executorch', 'int8'): stem + '_int8.pte',
             (NATIVE, 'onnxruntime', 'fp32'): float_onnx_path(
                 stem + '_int8.onnx'),
             (NATIVE, 'onnxruntime', 'int8'): stem + '_int8.onnx'}
    if args.reuse and all(osp.isfile(p) for p in paths.values()):
        return paths
    size = MODELS[0][1]
    x, calib = torch.randn(1, 3, size, size), calibration_images(args, size)
    for precision in ('fp32', 'int8'):
        try:
            # int8: SS2D's projections quantized, as the export tool does
            # with --native-scan (the scan is the float operator)
            export(t2, 'xnnpack-native', x,
                   paths[(NATIVE, 'executorch', precision)],
                   calibration=calib if precision == 'int8' else None)
        except RuntimeError as e:  # a program XNNPACK cannot run: reported
            print(f'not timed: T2 native scan executorch {precision}: {e}')
            del paths[(NATIVE, 'executorch', precision)]
    export(t2, 'onnx-native', x, paths[(NATIVE, 'onnxruntime', 'int8')],
           calibration=calib)
    print('T2 with the native scan: .pte and .onnx, fp32 and int8 written')
    return paths


def export_stand_in(args, t2: torch.nn.Module) -> Dict[tuple, str]:
    """T2 in fp32 with a zero-cost scan, for both runtimes."""
    from mmmobilemamba.analysis.scan_cost import without_scan
    from mmmobilemamba.deploy import convert, export
    stem = osp.join(args.work_dir, 't2_zero_cost_scan')
    paths = {(STAND_IN, 'executorch', 'fp32'): stem + '.pte',
             (STAND_IN, 'onnxruntime', 'fp32'): stem + '.onnx'}
    if args.reuse and all(osp.isfile(p) for p in paths.values()):
        return paths
    x = torch.randn(1, 3, MODELS[0][1], MODELS[0][1])
    for target, runtime in (('xnnpack', 'executorch'),
                            ('onnx', 'onnxruntime')):
        # the target's form first, then the scans taken out of it
        free = without_scan(convert(t2, target))
        export(free, target, x, paths[(STAND_IN, runtime, 'fp32')])
    return paths


def time_all(paths: Dict[tuple, str], threads: int, rounds: int,
             iters: int) -> Dict[tuple, List[float]]:
    from mmmobilemamba.deploy.runtimes import make_runner
    sizes = dict(MODELS, **{STAND_IN: MODELS[0][1], NATIVE: MODELS[0][1]})
    runners = {key: make_runner(key[1], path, threads)
               for key, path in paths.items()}
    inputs = {key: torch.randn(1, 3, sizes[key[0]], sizes[key[0]])
              for key in paths}
    arrays = {key: x.numpy() for key, x in inputs.items()}
    for key, run in list(runners.items()):  # warm-up
        try:
            for _ in range(3):
                run(inputs[key] if key[1] == 'executorch' else arrays[key])
        except RuntimeError as e:  # reported, and left out of the rounds
            print(f'not timed: {" ".join(key)} ({paths[key]}) fails to run: '
                  f'{str(e).splitlines()[-1]}')
            del runners[key]
    times: Dict[tuple, List[float]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            x = inputs[key] if key[1] == 'executorch' else arrays[key]
            for _ in range(iters):
                start = time.perf_counter()
                run(x)
                times[key].append(1e3 * (time.perf_counter() - start))
    return times


def machine() -> str:
    from mmmobilemamba.analysis.timing import cpu_name
    return f'{cpu_name()}, {os.cpu_count()} logical CPUs'


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmmobilemamba.analysis.timing import percentile
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    if args.dense:
        from mmmobilemamba.deploy.dense import bench
        return bench.main(args, calibration_images, percentile)
    paths = export_all(args)
    t2, peer = MODELS[0][0], MODELS[1][0]
    print(f'machine: {machine()}; load average '
          f'{" ".join(f"{v:.2f}" for v in os.getloadavg())}')
    for threads in args.threads:
        times = time_all(paths, threads, args.rounds, args.iters)
        print(f'\n{threads} thread(s), batch 1, {args.rounds} rounds x '
              f'{args.iters} runs (ms)')
        print(f'| runtime | precision | {t2} median / p90 | {peer} median '
              f'/ p90 | T2 / MNv3-L | {t2} MiB | {peer} MiB |')
        print('|---|---|---|---|---|---|---|')
        med = {}
        for runtime in ('executorch', 'onnxruntime'):
            for precision in ('fp32', 'int8'):
                cells = []
                for name in (t2, peer):
                    t = times[(name, runtime, precision)]
                    med[(name, runtime, precision)] = statistics.median(t)
                    cells.append(f'{statistics.median(t):.2f} / '
                                 f'{percentile(t, 90):.2f}')
                ratio = (med[(t2, runtime, precision)] /
                         med[(peer, runtime, precision)])
                mib = [osp.getsize(paths[(n, runtime, precision)]) / 2**20
                       for n in (t2, peer)]
                print(f'| {runtime} | {precision} | {cells[0]} | {cells[1]} '
                      f'| {ratio:.2f}x | {mib[0]:.1f} | {mib[1]:.1f} |')
        for runtime in ('executorch', 'onnxruntime'):
            speedups = [med[(n, runtime, 'fp32')] / med[(n, runtime, 'int8')]
                        for n in (t2, peer)]
            print(f'int8 speed-up in {runtime}: T2 {speedups[0]:.2f}x, '
                  f'MNv3-L {speedups[1]:.2f}x')
            key = (STAND_IN, runtime, 'fp32')
            if key in times:
                free = statistics.median(times[key])
                real = med[(t2, runtime, 'fp32')]
                print(f'{runtime} fp32, T2 with a zero-cost scan: {free:.2f} '
                      f'ms ({free / med[(peer, runtime, "fp32")]:.2f}x '
                      f'MNv3-L); the scan costs {real - free:.2f} ms of '
                      f'{real:.2f}')
            for precision in ('fp32', 'int8'):
                key = (NATIVE, runtime, precision)
                if key not in times:
                    continue
                native = statistics.median(times[key])
                portable = med[(t2, runtime, precision)]
                line = (f'{runtime} {precision}, T2 with the native scan: '
                        f'{native:.2f} ms / p90 '
                        f'{percentile(times[key], 90):.2f} '
                        f'({native / med[(peer, runtime, precision)]:.2f}x '
                        f'MNv3-L; portable scan {portable:.2f} ms)')
                free_key = (STAND_IN, runtime, precision)
                if free_key in times:
                    free = statistics.median(times[free_key])
                    line += (f'; the native scan is '
                             f'{100 * (native - free) / native:.1f} % of it')
                print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
