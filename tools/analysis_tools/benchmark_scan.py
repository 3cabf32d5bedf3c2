"""Benchmark the selective-scan backends on MobileMamba's real SS2D shapes.

    python tools/analysis_tools/benchmark_scan.py [--variants T2 B1 B4]
        [--batch 1 32] [--backends ref torch triton] [--device cpu|cuda]
        [--threads N] [--min-time 0.3]

Every stage of every variant runs the model's call, the two-direction scan
``selective_scan_bidirectional(u (b, d, L), delta (b, 2, d, L), A (2d, 1),
B/C (b, 2, 1, L), D (2d), delta_bias (2d), delta_softplus=True)`` in fp32,
d = d_inner and L = H * W of the stage. For each backend the script prints,
all measured in this one process:

* forward time (no autograd) and forward + backward time (all input
  gradients), the best of repeated runs;
* the speed-up over ``ref`` (``ref`` time / backend time);
* achieved bandwidth: the compulsory traffic divided by the time. Forward
  moves u, delta, B, C in and y out; forward + backward also moves u, delta,
  B, C and dy in and du, d(delta), dB, dC out (the small parameters are
  ignored). The machine's copy bandwidth is measured first, in the same
  process, with a plain ``copy_`` of a 256 MiB buffer (read + write
  bytes / time), and the forward's bandwidth is also printed as a share of
  it (``%copy``);
* peak memory above what was allocated before the call, as a multiple of
  the inputs' size. On CPU it comes from the profiler's
  allocation events (one extra, untimed run, after the ``'torch'``
  backend's kept scratch is released, so the scratch is counted), on CUDA
  from ``torch.cuda.max_memory_allocated``. For forward + backward it
  includes y, the incoming gradient and the input gradients. The ``'cpp'``
  backend's per-thread scratch is allocated outside PyTorch's allocator;
  the kernel reports its size, which is added (for every thread that has
  work).

The reference is the sequential loop (``'ref'``) with PyTorch's autograd,
as users would write it. After the table, the targets of the fused kernel
are checked on their shapes (``--targets``).

``ref``'s autograd backward needs memory quadratic in L (each step's slice
gradient is a zero-padded full-size tensor), so its forward + backward is
skipped ('nan') where that would exceed ``--ref-backward-gb``.

It is a measurement tool, not a test: numbers depend on the machine and on
what else runs on it.
"""
import argparse
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

from mmmobilemamba.ops.selective_scan import (available_backends,
                                              release_workspace,
                                              selective_scan_bidirectional)
from mmmobilemamba.ops.selective_scan.cpp_scan import _EXT as CPP_EXT

#: variant -> (input size, ((d_inner, L) per stage)): SS2D runs at strides
#: 16, 32 and 64 with d_inner = 2 * global channels.
SHAPES: Dict[str, Tuple[int, Tuple[Tuple[int, int], ...]]] = {
    'T2': (192, ((224, 144), (384, 36), (448, 9))),
    'B1': (256, ((320, 256), (512, 64), (544, 16))),
    'B4': (512, ((320, 1024), (512, 256), (544, 64))),
}


def make_inputs(batch: int, dim: int, length: int, device: str,
                requires_grad: bool) -> List[torch.Tensor]:
    """The model's scan inputs, initialised as SS2D initialises them."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    u = rand(batch, dim, length)
    delta = rand(batch, 2, dim, length) * 0.1
    A = -torch.ones(2 * dim, 1)
    B, C = rand(batch, 2, 1, length), rand(batch, 2, 1, length)
    D = torch.ones(2 * dim)
    bias = torch.rand(2 * dim, generator=g) * 0.1
    return [t.to(device).requires_grad_(requires_grad)
            for t in (u, delta, A, B, C, D, bias)]


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def best_time(fn: Callable[[], None], device: str, min_time: float) -> float:
    """Best wall time of repeated calls (a warm-up, then at least 2 runs;
    a call slower than 10 * min_time is timed once, warm-up included)."""
    start = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - start
    if first > 10 * min_time:
        return first
    best, spent, runs = float('inf'), 0., 0
    while runs < 2 or (spent < min_time and runs < 50):
        start = time.perf_counter()
        fn()
        _sync(device)
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


def peak_bytes(fn: Callable[[], None], device: str) -> int:
    """Peak memory allocated by ``fn`` above what was allocated before."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    # The 'torch' backend keeps its slab scratch between calls; drop it so
    # that the measured call allocates (and is charged for) all of it.
    release_workspace()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        fn()
    events = sorted((e.start_ns(), e.nbytes())
                    for e in p.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak


def copy_bandwidth(device: str, mib: int = 256, runs: int = 7) -> float:
    """GB/s of a plain ``dst.copy_(src)`` of ``mib`` MiB (read + write
    bytes over the best time)."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    best = float('inf')
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best / 1e9


def cpp_scratch(batch: int, dim: int, length: int, backward: bool) -> int:
    """Bytes of the compiled kernel's scratch, over the threads that get
    at least one of its (sample, 32-channel block) tasks."""
    if CPP_EXT is None:
        return 0
    tasks = batch * -(-dim // CPP_EXT.CHANNEL_BLOCK)
    threads = min(torch.get_num_threads(), tasks)
    return threads * CPP_EXT.scratch_bytes(length, 1, 2, False, backward,
                                           False)


def card_bandwidth() -> Optional[float]:
    """Peak DRAM bandwidth of the current CUDA card in GB/s, if known."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock = getattr(props, 'memory_clock_rate', None)  # kHz
    width = getattr(props, 'memory_bus_width', None)  # bits
    if not clock or not width:
        return None
    return 2 * clock * 1e3 * width / 8 / 1e9


def ref_backward_bytes(batch: int, dim: int, length: int) -> int:
    """Rough memory of ``ref``'s autograd backward: every time step's
    slice gradient is a zero-padded copy of a whole (b, 2d, L) input, and
    the engine may hold them all before summing (O(L^2))."""
    return 3 * length * batch * 2 * dim * length * 4


def measure(backend: str, batch: int, dim: int, length: int, device: str,
            min_time: float, backward: bool = True) -> Dict[str, float]:
    """Times, bandwidths and peak memory of one backend on one shape
    (forward + backward entries are NaN when ``backward`` is False)."""
    ins = make_inputs(batch, dim, length, device, requires_grad=True)
    gy = torch.randn(batch, dim, length, device=device)
    in_bytes = sum(t.numel() * t.element_size() for t in ins)

    def fwd():
        with torch.no_grad():
            selective_scan_bidirectional(*ins, delta_softplus=True,
                                         backend=backend)

    def fwd_bwd():
        y = selective_scan_bidirectional(*ins, delta_softplus=True,
                                         backend=backend)
        torch.autograd.grad(y, ins, gy)

    elems = batch * dim * length  # one (b, d, L) tensor
    bc = 2 * 2 * batch * length  # B and C, both directions, N = 1
    fwd_bytes = 4 * (4 * elems + bc)
    bwd_bytes = 4 * (8 * elems + 2 * bc)
    t_f = best_time(fwd, device, min_time)
    nan = float('nan')
    t_fb = best_time(fwd_bwd, device, min_time) if backward else nan
    extra_f = extra_fb = 0
    if backend == 'cpp' and device == 'cpu':
        extra_f = cpp_scratch(batch, dim, length, False)
        extra_fb = max(extra_f, cpp_scratch(batch, dim, length, True))
    return dict(fwd=t_f, fwd_bwd=t_fb, fwd_gbs=fwd_bytes / t_f / 1e9,
                fwd_bwd_gbs=(fwd_bytes + bwd_bytes) / t_fb / 1e9,
                mem_fwd=(peak_bytes(fwd, device) + extra_f) / in_bytes,
                mem_fwd_bwd=((peak_bytes(fwd_bwd, device) + extra_fb) /
                             in_bytes if backward else nan),
                in_mib=in_bytes / 2**20)


#: (label, variant, stage, batch, measure, minimum speed-up over 'ref').
TARGETS = (
    ('f+b b1 L=256 (B1 s1, 2 x 320 channels)', 'B1', 1, 1, 'fwd_bwd', 100),
    ('f+b b1 L=1024 (B4 s1, 2 x 320 channels)', 'B4', 1, 1, 'fwd_bwd', 200),
    ('fwd b32 L=1024 (B4 s1, 2 x 320 channels)', 'B4', 1, 32, 'fwd', 20),
)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=list(SHAPES),
                        choices=list(SHAPES))
    parser.add_argument('--batch', nargs='+', type=int, default=[1, 32])
    parser.add_argument('--backends', nargs='+', default=None,
                        help='default: every backend available on --device')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (CPU)')
    parser.add_argument('--min-time', type=float, default=0.3,
                        help='seconds of repeated runs per measurement')
    parser.add_argument('--targets', action='store_true',
                        help='measure only the shapes of the targets and '
                        'print each speed-up against its target')
    parser.add_argument('--ref-backward-gb', type=float, default=8.,
                        help='skip ref forward+backward (and its ratios) '
                        'where its autograd would need more than this')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = args.backends or [b for b in available_backends(args.device)
                                 if b != 'export']
    # ref first: every ratio is against it
    backends = ['ref'] + [b for b in backends if b != 'ref']
    print(f'device={args.device} threads={torch.get_num_threads()} '
          f'torch={torch.__version__} backends={backends}'
          + (f' cpp-isa={CPP_EXT.isa()}' if CPP_EXT is not None else ''))
    copy_gbs = copy_bandwidth(args.device)
    print(f'copy_ bandwidth of a 256 MiB buffer: {copy_gbs:.2f} GB/s')
    if args.device == 'cuda':
        bw = card_bandwidth()
        print(f'card: {torch.cuda.get_device_name()}, peak DRAM bandwidth '
              f'{"unknown" if bw is None else f"{bw:.0f} GB/s"}')
    head = (f'{"shape":<24}{"backend":<8}{"fwd ms":>10}{"x ref":>8}'
            f'{"GB/s":>7}{"%copy":>6}{"f+b ms":>10}{"x ref":>8}{"GB/s":>7}'
            f'{"mem fwd":>9}{"mem f+b":>9}')
    print(head + '   (mem: peak extra / inputs)')
    cases = []
    for variant in args.variants:
        size, stages = SHAPES[variant]
        for stage, (dim, length) in enumerate(stages, 1):
            for batch in args.batch:
                cases.append((variant, stage, batch))
    if args.targets:
        cases = [(v, s, b) for _, v, s, b, _, _ in TARGETS]
    results = {}
    for variant, stage, batch in cases:
        size, stages = SHAPES[variant]
        dim, length = stages[stage - 1]
        shape = f'{variant}@{size} s{stage} b{batch} d{dim} L{length}'
        ref = None
        for backend in backends:
            backward = (backend != 'ref' or ref_backward_bytes(
                batch, dim, length) <= args.ref_backward_gb * 2**30)
            if args.targets and batch == 32 and backend == 'ref':
                backward = False  # the batch-32 target is the forward
            r = measure(backend, batch, dim, length, args.device,
                        args.min_time, backward)
            ref = ref or r
            results[(variant, stage, batch, backend)] = (r, ref)
            print(f'{shape:<24}{backend:<8}'
                  f'{r["fwd"] * 1e3:>10.3f}'
                  f'{ref["fwd"] / r["fwd"]:>8.1f}'
                  f'{r["fwd_gbs"]:>7.2f}'
                  f'{100 * r["fwd_gbs"] / copy_gbs:>6.0f}'
                  f'{r["fwd_bwd"] * 1e3:>10.3f}'
                  f'{ref["fwd_bwd"] / r["fwd_bwd"]:>8.1f}'
                  f'{r["fwd_bwd_gbs"]:>7.2f}'
                  f'{r["mem_fwd"]:>9.2f}{r["mem_fwd_bwd"]:>9.2f}',
                  flush=True)
            shape = ''
    fastest = [b for b in backends if b != 'ref']
    if fastest:
        print(f'targets (speed-up of {fastest[0]!r} over ref):')
    for label, variant, stage, batch, what, want in TARGETS:
        got = results.get((variant, stage, batch, fastest[0])) \
            if fastest else None
        if got is None:
            continue
        r, ref = got
        ratio = ref[what] / r[what]
        verdict = 'met' if ratio >= want else 'MISSED'
        print(f'  {label}: {ratio:.0f}x (target >= {want}x) {verdict}')


if __name__ == '__main__':
    main()
