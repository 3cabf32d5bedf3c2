"""Inference speed of a model: throughput and batch-1 latency.

    python tools/analysis_tools/benchmark.py CONFIG [--shape H [W]]
        [--batch 32] [--device cpu|cuda] [--threads N] [--fuse]
        [--channels-last] [--compile] [--peers] [--scan-share]
        [--rounds 5] [--latency-iters 30]
        [--latency-threads 1 2] [--variants] [--onnx] [--plot OUT.png]

CONFIG is a classifier (mmpretrain), a detector (mmdet) or a segmentor
(mmseg). For the last two the dense part is timed, the part the FLOP tables
count (:mod:`mmmobilemamba.analysis.dense_parts`): backbone + neck + dense head
at 1280x800 (SSD: its test size), backbone + neck + decode head at 512x512;
no post-processing or RoI heads.

Everything is measured in this one process, in eval mode under
``torch.inference_mode`` and after a warm-up:

* throughput (img/s) at ``--batch``: the median over ``--rounds`` rounds
  (ratios are printed from wall-clock and from process CPU time);
* latency at batch 1: median and 90th percentile over ``--latency-iters``
  single-image forwards (what a mobile user waits for).

The model is built from CONFIG with random weights and random BatchNorm
statistics (speed does not depend on the values; BN fusion does need
non-trivial statistics to be a real fold). ``--fuse`` times the inference
form, ``mmmobilemamba.deploy.convert(model, 'eager-cpu')`` on a CPU
(``'fused'`` on a GPU), and also the training form, printing the speed-up.
``--peers`` times mmpretrain's MobileNetV3-Large (224), MobileViT-XS/S
(256) and EfficientNet-B0 (224) at their own resolutions in the same
rounds, interleaved with the model, so
that machine load affects all alike, and prints the ratios.
``--scan-share`` prints the selective scan's share of the forward, timed
around each scan call and as the time a zero-cost stand-in saves.

Batch-1 latency, what a phone user waits for, is measured on its own too:

* ``--latency-threads 1 2``: for each thread count, every model's batch-1
  forwards, interleaved one model after the other in rotating order over
  ``--rounds`` rounds; median and 90th percentile per model, and each
  model's ratio to MobileNetV3-Large (with ``--peers``);
* ``--variants``: the other MobileMamba classifiers (of T2, T4, S6, B1,
  B2, B4, at their test sizes, BN fused with ``--fuse``) join that
  comparison;
* ``--onnx``: every model of the comparison is exported to ONNX with
  ``mmmobilemamba.deploy.export(model, 'onnx', ...)`` (the route of
  ``tools/deployment/export.py``) and timed the same way in onnxruntime
  with one intra-op thread and spinning off;
* ``--plot OUT.png``: measured batch-1 latency against ImageNet top-1, one
  panel per runtime, each accuracy being the release's (MobileMamba) or
  the published one in mmpretrain's model zoo (peers).

Timings taken while other jobs load the machine are noise: check the load
average first (the tool prints it).
"""
import argparse
import copy
import inspect
import os
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmmobilemamba.analysis.scan_cost import timed_scan, without_scan
from mmmobilemamba.analysis.timing import (CLASSIFIER, build_model,
                                           build_peer, cpu_name, percentile)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: mmpretrain model names of the peers and the resolution each is run at.
PEERS: Tuple[Tuple[str, str, int], ...] = (
    ('MobileNetV3-Large', 'mobilenet-v3-large_8xb128_in1k', 224),
    ('MobileViT-XS', 'mobilevit-xsmall_3rdparty_in1k', 256),
    ('MobileViT-S', 'mobilevit-small_3rdparty_in1k', 256),
    ('EfficientNet-B0', 'efficientnet-b0_3rdparty_8xb32_in1k', 224),
)

#: ImageNet-1k top-1 of the peers as published in mmpretrain 1.2.0's model
#: zoo (the metafile of each model name above).
PEER_TOP1: Dict[str, float] = {
    'MobileNetV3-Large': 73.49, 'MobileViT-XS': 74.75, 'MobileViT-S': 78.25,
    'EfficientNet-B0': 76.74}

#: MobileMamba variants: (label, config name, top-1 300 ep, top-1 1000 ep +
#: KD), accuracies being the authors' release's (not re-measured here).
VARIANTS: Tuple[Tuple[str, str, float, float], ...] = (
    ('MobileMamba-T2', 'mobilemamba-t2_8xb128_in1k', 71.5, 76.9),
    ('MobileMamba-T4', 'mobilemamba-t4_8xb128_in1k', 76.1, 78.9),
    ('MobileMamba-S6', 'mobilemamba-s6_8xb128_in1k', 78.0, 80.7),
    ('MobileMamba-B1', 'mobilemamba-b1_8xb128_in1k', 79.9, 82.2),
    ('MobileMamba-B2', 'mobilemamba-b2_8xb128_in1k', 81.6, 83.3),
    ('MobileMamba-B4', 'mobilemamba-b4_8xb128_in1k', 82.5, 83.6),
)

#: The peer that ratios are printed against.
BASELINE = 'MobileNetV3-Large'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='classifier, detector or segmentor '
                        'config')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        metavar='H [W]',
                        help="input size; default: a classifier config's "
                        'test crop (224 if it names none), the FLOP tables\' '
                        'size for detectors and segmentors')
    parser.add_argument('--batch', type=int, default=32,
                        help='batch size of the throughput measurement')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--threads', type=int, default=None,
                        help="torch intra-op threads (default: torch's)")
    parser.add_argument('--fuse', action='store_true',
                        help='fold BatchNorms (deploy mode); the unfused '
                        'model is timed too for the fusion ratio')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last memory format')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile every timed model')
    parser.add_argument('--peers', action='store_true',
                        help='time mmpretrain peers in the same process')
    parser.add_argument('--scan-share', action='store_true',
                        help="print the selective scan's share of a forward")
    parser.add_argument('--scan-backend', default=None,
                        help='selective-scan backend (default: fastest)')
    parser.add_argument('--rounds', type=int, default=5,
                        help='timed throughput rounds (median reported)')
    parser.add_argument('--latency-iters', type=int, default=30,
                        help='timed batch-1 forwards per model')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed forwards per model and batch size')
    parser.add_argument('--latency-threads', type=int, nargs='+',
                        default=None, metavar='N',
                        help='also measure batch-1 latency alone, '
                        'interleaved, at each of these thread counts')
    parser.add_argument('--variants', action='store_true',
                        help='add the six MobileMamba classifiers (fused '
                        'with --fuse) to the batch-1 latency comparison')
    parser.add_argument('--onnx', action='store_true',
                        help='export every model of the comparison and time '
                        'batch-1 latency in onnxruntime (1 thread, no '
                        'spinning)')
    parser.add_argument('--plot', default=None, metavar='OUT.png',
                        help='write batch-1 latency vs top-1 (needs '
                        '--latency-threads or --onnx)')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    for name in ('batch', 'rounds', 'latency_iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    if any(n < 1 for n in args.latency_threads or []):
        parser.error('--latency-threads must be >= 1')
    if args.plot and not (args.latency_threads or args.onnx):
        parser.error('--plot needs --latency-threads or --onnx')
    return args


class Timed:
    """A model prepared for timing on a device, with its input sizes.

    Args:
        label (str): Name printed in the table.
        model (nn.Module): Model in eval mode (called with
            ``mode='tensor'`` when it accepts it).
        size (tuple[int, int]): Input (H, W).
        device (torch.device): Where to run.
        channels_last (bool): Use the channels-last memory format.
        compile (bool): Wrap the forward in ``torch.compile`` with static
            shapes: the batch-32 and the batch-1 forwards each get their own
            graph (with the default, the second batch size recompiles the
            graph with a symbolic batch: T2 at batch 1 took 20.0 and 34.9 ms
            that way, 14.5 and 15.8 ms with static graphs, 2 threads).
    """

    def __init__(self, label: str, model: nn.Module, size: Tuple[int, int],
                 device: torch.device, channels_last: bool = False,
                 compile: bool = False) -> None:
        self.label, self.size, self.device = label, size, device
        self.model = model.to(device)
        self.takes_mode = 'mode' in inspect.signature(model.forward).parameters
        self.memory_format = (torch.channels_last if channels_last else
                              torch.contiguous_format)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        fn: Callable = self._call
        self.fn = torch.compile(fn, dynamic=False) if compile else fn
        self.last_cpu = 0.
        self.throughput: List[float] = []  # seconds per batch
        self.cpu: List[float] = []  # process CPU seconds per batch
        self.latency: List[float] = []  # seconds per image at batch 1

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        if self.takes_mode:  # an OpenMMLab model: no post-processing
            return self.model(x, mode='tensor')
        return self.model(x)

    def input(self, batch: int) -> torch.Tensor:
        x = torch.rand(batch, 3, *self.size, device=self.device)
        return x.contiguous(memory_format=self.memory_format)

    def run(self, x: torch.Tensor, iters: int = 1) -> float:
        """Mean wall seconds of ``iters`` forwards of ``x`` (the process
        CPU seconds are kept in ``self.last_cpu``)."""
        sync = (torch.cuda.synchronize if self.device.type == 'cuda' else
                (lambda: None))
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            self.fn(x)
        sync()
        self.last_cpu = (time.process_time() - cpu) / iters
        return (time.perf_counter() - start) / iters


def measure(models: List[Timed], batch: int, rounds: int, latency_iters: int,
            warmup: int) -> None:
    """Interleaved rounds: every model is timed once per round, the order
    rotating, so drifting load spreads over all of them."""
    big = [m.input(batch) for m in models]
    one = [m.input(1) for m in models]
    with torch.inference_mode():
        for m, xb, x1 in zip(models, big, one):
            for _ in range(warmup):
                m.run(xb)
                m.run(x1)
        n = len(models)
        per_round = max(1, latency_iters // rounds)
        for r in range(rounds):
            for i in range(n):
                k = (i + r) % n
                models[k].throughput.append(models[k].run(big[k]))
                models[k].cpu.append(models[k].last_cpu)
                for _ in range(per_round):
                    models[k].latency.append(models[k].run(one[k]))


def scan_share(target: 'Timed', x: torch.Tensor, repeats: int = 5
               ) -> Tuple[float, float, float]:
    """The selective scan's cost inside the forward, measured two ways.

    * timed: the scan call of every SS2D
      (:func:`~mmmobilemamba.ops.selective_scan_bidirectional`, the kernel
      and its argument handling; not the x/dt projections around it) is
      wrapped by a timer;
    * stand-in: forwards with the scan replaced by a zero-cost stand-in
      (returns its input u), interleaved with real forwards; the scan's
      cost is the difference of the medians.

    Returns:
        tuple: seconds in the timed scan calls, seconds saved by the
        stand-in, seconds of the whole forward (medians over ``repeats``).
    """
    spent: List[float] = []
    models = (target.model, timed_scan(target.model, spent),
              without_scan(target.model))

    def forward(model: nn.Module) -> float:
        sync = (torch.cuda.synchronize if x.device.type == 'cuda' else
                (lambda: None))
        sync()
        start = time.perf_counter()
        if target.takes_mode:
            model(x, mode='tensor')
        else:
            model(x)
        sync()
        return time.perf_counter() - start

    scans, totals, without = [], [], []
    with torch.inference_mode():
        for model in models:  # warm-up
            forward(model)
        for _ in range(repeats):
            spent.clear()
            forward(models[1])
            scans.append(sum(spent))
            totals.append(forward(models[0]))
            without.append(forward(models[2]))
    total = statistics.median(totals)
    return (statistics.median(scans), total - statistics.median(without),
            total)


def measure_latency(runners: List[Tuple[str, Callable[[], object]]],
                    rounds: int, iters: int, warmup: int
                    ) -> Dict[str, List[float]]:
    """Batch-1 latency of each ``(label, forward)``, interleaved.

    Every round runs each model's ``iters // rounds`` forwards (at least
    one), the models in an order that rotates from round to round, so that
    drifting load and cache state spread over all of them. Each forward is
    timed on its own.

    Returns:
        dict: label -> seconds of every timed forward.
    """
    times: Dict[str, List[float]] = {label: [] for label, _ in runners}
    for _, fn in runners:
        for _ in range(warmup):
            fn()
    per_round = max(1, iters // rounds)
    n = len(runners)
    for r in range(rounds):
        for i in range(n):
            label, fn = runners[(i + r) % n]
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
    return times


def torch_runner(m: 'Timed') -> Callable[[], object]:
    """A batch-1 forward of ``m`` under inference mode."""
    x = m.input(1)

    def run():
        with torch.inference_mode():
            return m.fn(x)
    return run


def export_onnx(m: 'Timed', path: str) -> str:
    """Export ``m``'s model at batch 1 to ``path`` the way
    ``tools/deployment/export.py`` does (:func:`mmmobilemamba.deploy.
    export`)."""
    from mmmobilemamba.deploy import export
    from mmmobilemamba.deploy.model_source import Logits
    model = copy.deepcopy(m.model).cpu().eval()
    export(Logits(model) if m.takes_mode else model, 'onnx',
           torch.rand(1, 3, *m.size), path)
    return path


def onnx_runner(path: str, size: Tuple[int, int]) -> Callable[[], object]:
    """A batch-1 onnxruntime run of ``path``: one intra-op thread, spinning
    off (spinning threads would steal the CPU from whatever runs next)."""
    import numpy as np

    from mmmobilemamba.deploy.runtimes import ort_session
    session = ort_session(path, threads=1)
    feed = {session.get_inputs()[0].name:
            np.random.rand(1, 3, *size).astype(np.float32)}
    return lambda: session.run(None, feed)


def inference_form(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as deployed for ``device``: converted for ``'eager-cpu'``
    on a CPU, ``'fused'`` elsewhere (:func:`mmmobilemamba.deploy.convert`)."""
    from mmmobilemamba.deploy import convert
    return convert(model, 'eager-cpu' if device.type == 'cpu' else 'fused')


def latency_table(title: str, times: Dict[str, List[float]],
                  sizes: Dict[str, Tuple[int, int]]) -> Dict[str, float]:
    """Print median / p90 and the ratio to :data:`BASELINE`; return the
    medians in ms."""
    medians = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    base = medians.get(BASELINE)
    print(f'\n{title}')
    print(f'| model | input | median (ms) | p90 (ms) | runs | median / '
          f'{BASELINE} |')
    print('|---|---|---|---|---|---|')
    for label, values in times.items():
        h, w = sizes[label]
        ratio = f'{medians[label] / base:.2f}' if base else 'n/a'
        print(f'| {label} | {h}x{w} | {medians[label]:.2f} | '
              f'{1e3 * percentile(values, 90):.2f} | {len(values)} | '
              f'{ratio} |')
    return medians


def plot_latency(path: str, panels: Dict[str, Dict[str, float]],
                 top1: Dict[str, Tuple[float, Optional[float]]]) -> None:
    """Write batch-1 latency vs top-1, one panel per runtime.

    Args:
        panels: panel title -> label -> median latency (ms).
        top1: label -> (top-1, top-1 with 1000 ep + KD or None); MobileMamba
            labels start with 'MobileMamba'.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8),
                             squeeze=False)
    for ax, (title, lat) in zip(axes[0], panels.items()):
        ours = [k for k in lat if k.startswith('MobileMamba') and k in top1]
        peers = [k for k in lat if k in PEER_TOP1]
        if ours:
            xs = [lat[k] for k in ours]
            ax.plot(xs, [top1[k][0] for k in ours], 'o-', color='C0',
                    label='MobileMamba, 300 ep (release top-1)')
            kd = [(lat[k], top1[k][1]) for k in ours if top1[k][1]]
            if kd:
                ax.plot(*zip(*kd), 's--', color='C0', mfc='none',
                        label='MobileMamba, 1000 ep + KD (release top-1)')
            for k in ours:
                ax.annotate(k.split('-', 1)[1], (lat[k], top1[k][0]),
                            textcoords='offset points', xytext=(5, -10))
        for k in peers:
            ax.plot(lat[k], PEER_TOP1[k], '^', color='C3')
            ax.annotate(k, (lat[k], PEER_TOP1[k]),
                        textcoords='offset points', xytext=(5, 4))
        if peers:
            ax.plot([], [], '^', color='C3',
                    label='peers (top-1 published in mmpretrain)')
        ax.set_xscale('log')
        ax.set_xlabel('measured batch-1 latency (ms, log scale)')
        ax.set_ylabel('ImageNet-1k top-1 (%)')
        ax.set_title(title)
        ax.grid(True, which='both', alpha=.3)
        ax.legend(loc='lower right', fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(ips: float) -> str:
    """Throughput with three significant digits below 100 img/s."""
    return f'{ips:.1f}' if ips >= 100 else f'{ips:#.3g}'


def machine(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{cpu_name()}, {torch.get_num_threads()} threads'


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print(f'error: --device {args.device} but CUDA is not available',
              file=sys.stderr)
        return 1
    model, shape, what = build_model(args.config, args.scan_backend)
    if args.peers and what != CLASSIFIER:
        print(f'error: --peers compares classifiers; {args.config} is not '
              'one', file=sys.stderr)
        return 1
    if args.shape is not None:
        shape = (args.shape[0], args.shape[-1])
    name = osp.splitext(osp.basename(args.config))[0]
    timed: List[Timed] = []
    opts = dict(device=device, channels_last=args.channels_last,
                compile=args.compile)
    unfused = None
    if args.fuse:
        unfused = Timed(f'{name} (unfused)', model, shape, **opts)
        fused_model = inference_form(model, device)
        main_model = Timed(f'{name} (fused)', fused_model, shape, **opts)
        timed += [main_model, unfused]
    else:
        main_model = Timed(name, model, shape, **opts)
        timed.append(main_model)
    if args.peers:
        for label, peer, res in PEERS:
            timed.append(Timed(label, build_peer(peer), (res, res), **opts))

    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f'machine: {machine(device)}; torch {torch.__version__}; '
          f'load average {load:.2f} at start')
    print(f'timed: {what}')
    n_latency = max(1, args.latency_iters // args.rounds) * args.rounds
    print(f'batch {args.batch} throughput: median of {args.rounds} rounds; '
          f'batch-1 latency over {n_latency} forwards; warm-up '
          f'{args.warmup}; channels_last='
          f'{args.channels_last}, compile={args.compile}')
    measure(timed, args.batch, args.rounds, args.latency_iters, args.warmup)

    print(f'\n| model | input | throughput (img/s, batch {args.batch}) | '
          'latency median (ms) | latency p90 (ms) |')
    print('|---|---|---|---|---|')
    speed: Dict[str, float] = {}
    for m in timed:
        ips = args.batch / statistics.median(m.throughput)
        speed[m.label] = ips
        print(f'| {m.label} | {m.size[0]}x{m.size[1]} | {_fmt(ips)} | '
              f'{1e3 * statistics.median(m.latency):.1f} | '
              f'{1e3 * percentile(m.latency, 90):.1f} |')
    print()
    main_ips = speed[main_model.label]
    cpu_ips = {m.label: args.batch / statistics.median(m.cpu) for m in timed}
    # CPU-time ratios are less sensitive to other jobs on a shared machine
    # than wall-clock ratios (they still share caches and memory bandwidth).
    if unfused is not None:
        print(f'BN fusion speed-up (fused / unfused throughput): '
              f'{main_ips / speed[unfused.label]:.3f}x wall, '
              f'{cpu_ips[main_model.label] / cpu_ips[unfused.label]:.3f}x '
              'CPU time')
    if args.peers:
        for label, _, res in PEERS:
            print(f'ratio {main_model.label}@{shape[0]} / {label}@{res}: '
                  f'{main_ips / speed[label]:.2f}x wall, '
                  f'{cpu_ips[main_model.label] / cpu_ips[label]:.2f}x '
                  'CPU time')
    if args.scan_share:
        x = main_model.input(args.batch)
        scan, saved, total = scan_share(main_model, x)
        print(f'selective scan share of the forward (batch {args.batch}, '
              f'forward {total * 1e3:.2f} ms): timed calls '
              f'{100 * scan / total:.1f}% ({scan * 1e3:.2f} ms); zero-cost '
              f'stand-in saves {100 * saved / total:.1f}% '
              f'({saved * 1e3:.2f} ms)')
    if args.latency_threads or args.onnx:
        latency_comparison(args, name, main_model, timed, opts)
    return 0


def latency_comparison(args: argparse.Namespace, name: str,
                       main_model: 'Timed', timed: List['Timed'],
                       opts: dict) -> None:
    """The batch-1 latency tables (and plot) of ``--latency-threads``,
    ``--variants``, ``--onnx`` and ``--plot``."""
    variant = {cfg: (label, top, kd) for label, cfg, top, kd in VARIANTS}
    label = variant.get(name, (main_model.label, ))[0]
    models = [(label, main_model)]
    models += [(m.label, m) for m in timed if m.label in PEER_TOP1]
    if args.variants:
        for v_label, cfg, _, _ in VARIANTS:
            if v_label == label:
                continue
            path = osp.join(REPO, 'configs', 'mobilemamba', cfg + '.py')
            model, size, _ = build_model(path, args.scan_backend)
            if args.fuse:
                model = inference_form(model, torch.device(args.device))
            models.append((v_label, Timed(v_label, model, size, **opts)))
    # MobileMamba first in size order, then the peers.
    order = {v[0]: i for i, v in enumerate(VARIANTS)}
    models.sort(key=lambda lm: order.get(lm[0], len(order)))
    sizes = {lbl: m.size for lbl, m in models}
    top1 = {v[0]: (v[2], v[3]) for v in VARIANTS}
    panels: Dict[str, Dict[str, float]] = {}
    n_iters = max(1, args.latency_iters // args.rounds) * args.rounds
    print(f'\nbatch-1 latency: {n_iters} timed forwards per model, '
          f'interleaved over {args.rounds} rounds, warm-up {args.warmup}')
    threads_before = torch.get_num_threads()
    for threads in args.latency_threads or []:
        torch.set_num_threads(threads)
        times = measure_latency(
            [(lbl, torch_runner(m)) for lbl, m in models], args.rounds,
            args.latency_iters, args.warmup)
        title = (f'eager PyTorch {torch.__version__}, {threads} thread'
                 f'{"s" if threads > 1 else ""}')
        panels[title] = latency_table(f'batch-1 latency, {title}', times,
                                      sizes)
    torch.set_num_threads(threads_before)
    if args.onnx:
        import tempfile

        import onnxruntime as ort
        with tempfile.TemporaryDirectory() as tmp:
            runners = []
            for i, (lbl, m) in enumerate(models):
                path = export_onnx(m, osp.join(tmp, f'model{i}.onnx'))
                runners.append((lbl, onnx_runner(path, m.size)))
            times = measure_latency(runners, args.rounds, args.latency_iters,
                                    args.warmup)
        title = f'onnxruntime {ort.__version__}, 1 thread'
        panels[title] = latency_table(
            f'batch-1 latency, {title} (no spinning; MobileMamba BN fused, '
            "portable scan)", times, sizes)
    if args.plot:
        plot_latency(args.plot, panels, top1)
        print(f'\nwrote {args.plot}')


if __name__ == '__main__':
    sys.exit(main())
