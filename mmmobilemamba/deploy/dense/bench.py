"""Whole-model latency of MobileMamba-T2 detectors and segmentors against
the MobileNetV2 models a mobile user would pick, in the deployment
runtimes (``tools/analysis_tools/benchmark_deploy.py --dense``).

Pairs (random weights, random BatchNorm statistics; nothing downloaded):

* SSDLite-320: ``configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py``
  with a T2 backbone against mmdet's ``ssdlite_mobilenetv2-scratch_8xb24-
  600e_coco`` (both 80 classes, 320 x 320);
* DeepLabv3: ``configs/deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-
  512x512.py`` with a T2 backbone against mmseg's ``mobilenet-v2-d8_
  deeplabv3_4xb4-160k_ade20k-512x512`` (150 classes, 512 x 512).

Every model is written by :func:`mmmobilemamba.deploy.export` as
``tools/deployment/export.py`` writes it (:func:`.deployable`): ONNX with
NMS / resize + argmax in the graph, ``.pte`` with the dense part (a
detector's NMS is host code, not timed here), fp32 and int8 (the
classifier benchmark's quantizers; int8 calibrated on procedurally drawn
images, as that benchmark does). Timing: batch 1, the given thread counts,
all programs of one thread count loaded in one process and run in
interleaved rounds.
"""
import os.path as osp
import statistics
import time
from typing import Dict, List, Tuple

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

T2_SSDLITE = {
    'model.backbone.arch': 'T2',
    'model.neck.in_channels': [144, 272],
    'model.neck.out_channels': [144, 272, 512, 256, 256, 128],
    'model.bbox_head.in_channels': [144, 272, 512, 256, 256, 128],
}
T2_DEEPLABV3 = {
    'model.backbone.arch': 'T2',
    'model.decode_head.in_channels': 368,
    'model.auxiliary_head.in_channels': 272,
}
#: pair -> [(name, config, overrides), (peer name, config, overrides)], size
PAIRS = {
    'SSDLite-320': ([
        ('T2', 'configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py',
         T2_SSDLITE),
        ('MobileNetV2', 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_'
         'coco.py', {}),
    ], (320, 320)),
    'DeepLabv3': ([
        ('T2', 'configs/deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-'
         '512x512.py', T2_DEEPLABV3),
        ('MobileNetV2', 'mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-'
         '160k_ade20k-512x512.py', {'model.pretrained': None}),
    ], (512, 512)),
}
RUNTIMES = (('xnnpack', 'executorch', '.pte'), ('onnx', 'onnxruntime',
                                                '.onnx'))


def _config_file(path: str) -> str:
    """A repo-relative config, or a ``mmdet::``/``mmseg::`` one as a file
    of the installed package."""
    if '::' not in path:
        return osp.join(REPO, path)
    scope, rel = path.split('::')
    import importlib
    pkg = importlib.import_module(scope)
    return osp.join(osp.dirname(pkg.__file__), '.mim', 'configs', rel)


def build(config: str, overrides: dict):
    from mmmobilemamba.analysis.random_norms import randomize_norms
    from mmmobilemamba.deploy.model_source import load_model
    model, cfg = load_model(_config_file(config), None, dict(overrides))
    randomize_norms(model, seed=0)
    return model.eval(), cfg


def export_all(args, calibration_images) -> Dict[Tuple, str]:
    """(pair, model, runtime, precision) -> written file."""
    from mmmobilemamba.deploy import export
    from mmmobilemamba.deploy.dense import deployable
    from mmmobilemamba.deploy.export import float_onnx_path
    from mmmobilemamba.deploy.xnnpack import delegation_report
    from mmmobilemamba.models.ss2d import SS2D
    paths = {}
    for pair, (models, size) in PAIRS.items():
        calib = calibration_images(args, size[0])
        for name, config, overrides in models:
            stem = osp.join(args.work_dir, f'{pair}_{name}'.lower().replace(
                '-', '_'))
            files = {(rt, p): f'{stem}_{p}{ext}' for target, rt, ext in
                     RUNTIMES for p in ('fp32', 'int8')}
            # one int8 ONNX export writes the float model beside it
            files['onnxruntime', 'fp32'] = float_onnx_path(
                files['onnxruntime', 'int8'])
            for key, path in files.items():
                paths[(pair, name) + key] = path
            if args.reuse and all(osp.isfile(p) for p in files.values()):
                continue
            model, _ = build(config, overrides)
            x = torch.randn(1, 3, *size)
            for target, runtime, _ in RUNTIMES:
                dep = deployable(model, target, size)
                for precision in ('fp32', 'int8'):
                    if target == 'onnx' and precision == 'fp32':
                        continue  # written by the int8 export
                    start = time.perf_counter()
                    done = export(dep.module, target, x,
                                  files[(runtime, precision)],
                                  output_names=dep.output_names,
                                  calibration=calib if precision == 'int8'
                                  else None, float_types=(SS2D, ))
                    report = ''
                    if done.delegation is not None:
                        report = '; ' + delegation_report(
                            done.delegation).replace('\n', '; ')
                    print(f'{pair} {name} {runtime} {precision} in '
                          f'{time.perf_counter() - start:.0f} s{report}',
                          flush=True)
    return paths


def time_all(paths: Dict[Tuple, str], threads: int, rounds: int,
             iters: int) -> Dict[Tuple, List[float]]:
    from mmmobilemamba.deploy.runtimes import make_runner
    sizes = {pair: size for pair, (_, size) in PAIRS.items()}
    runners = {key: make_runner(key[2], path, threads)
               for key, path in paths.items()}
    inputs = {key: torch.randn(1, 3, *sizes[key[0]]) for key in paths}
    for key, run in runners.items():  # warm-up
        run(inputs[key] if key[2] == 'executorch' else inputs[key].numpy())
    times: Dict[Tuple, List[float]] = {key: [] for key in paths}
    for _ in range(rounds):
        for key, run in runners.items():
            x = inputs[key] if key[2] == 'executorch' else \
                inputs[key].numpy()
            for _ in range(iters):
                start = time.perf_counter()
                run(x)
                times[key].append(1e3 * (time.perf_counter() - start))
    return times


def report(paths, times, threads, rounds, iters, percentile) -> None:
    print(f'\n{threads} thread(s), batch 1, {rounds} rounds x {iters} runs '
          '(ms, median / p90)')
    print('| model | runtime | precision | T2 | MobileNetV2 | T2 / MNv2 | '
          'T2 MiB | MNv2 MiB |')
    print('|---|---|---|---|---|---|---|---|')
    for pair in PAIRS:
        for _, runtime, _ in RUNTIMES:
            for precision in ('fp32', 'int8'):
                cells, med, mib = [], [], []
                for name in ('T2', 'MobileNetV2'):
                    t = times[(pair, name, runtime, precision)]
                    med.append(statistics.median(t))
                    cells.append(f'{med[-1]:.1f} / {percentile(t, 90):.1f}')
                    mib.append(osp.getsize(
                        paths[(pair, name, runtime, precision)]) / 2**20)
                print(f'| {pair} | {runtime} | {precision} | {cells[0]} | '
                      f'{cells[1]} | {med[0] / med[1]:.2f}x | {mib[0]:.1f} '
                      f'| {mib[1]:.1f} |')


def main(args, calibration_images, percentile) -> int:
    import os
    os.makedirs(args.work_dir, exist_ok=True)
    paths = export_all(args, calibration_images)
    print(f'load average {" ".join(f"{v:.2f}" for v in os.getloadavg())}')
    for threads in args.threads:
        times = time_all(paths, threads, args.rounds, args.iters)
        report(paths, times, threads, args.rounds, args.iters, percentile)
    return 0
