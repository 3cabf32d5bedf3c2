"""Measurements of the selective scan on MobileMamba's SS2D shapes, shared
by ``tools/analysis_tools/benchmark_scan.py`` and ``check_gpu.py``."""
import math
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from mmmobilemamba.ops.scan import (cpu, selective_scan_bidirectional,
                                    torch_scan)

#: variant -> (ImageNet resolution, d_inner of SS2D per stage); SS2D runs
#: at strides 16, 32 and 64 with d_inner = 2 * the stage's global channels
#: (docs/architecture.md#channel-split).
VARIANTS: Dict[str, Tuple[int, Tuple[int, int, int]]] = {
    'T2': (192, (224, 384, 448)),
    'T4': (192, (288, 512, 544)),
    'S6': (224, (320, 544, 544)),
    'B1': (256, (320, 512, 544)),
    'B2': (384, (320, 512, 544)),
    'B4': (512, (320, 512, 544)),
}


def ss2d_shapes(variant: str, size: int = None) -> List[Tuple[int, int]]:
    """(d_inner, L) of the SS2D scans of ``variant`` at ``size`` pixels
    (default: its resolution), one per stage."""
    default, dims = VARIANTS[variant]
    size = size or default
    return [(dim, math.ceil(size / stride)**2)
            for dim, stride in zip(dims, (16, 32, 64))]


def scan_inputs(batch: int, dim: int, length: int, device: str = 'cpu',
                requires_grad: bool = False) -> List[torch.Tensor]:
    """SS2D's scan arguments (N = 1), initialised as SS2D initialises them:
    u, delta, A, B, C, D, delta_bias."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ins = (rand(batch, dim, length), rand(batch, 2, dim, length) * 0.1,
           -torch.ones(2 * dim, 1), rand(batch, 2, 1, length),
           rand(batch, 2, 1, length), torch.ones(2 * dim),
           torch.rand(2 * dim, generator=g) * 0.1)
    return [t.to(device).requires_grad_(requires_grad) for t in ins]


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def best_time(fn: Callable[[], None], device: str, min_time: float) -> float:
    """Best wall time of repeated calls (a warm-up, then at least 2 runs;
    a call slower than 10 * min_time is timed once, warm-up included)."""
    start = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - start
    if first > 10 * min_time:
        return first
    best, spent, runs = float('inf'), 0., 0
    while runs < 2 or (spent < min_time and runs < 50):
        start = time.perf_counter()
        fn()
        sync(device)
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


def interleaved_medians(fns: Dict[str, Callable[[], None]], device: str,
                        rounds: int) -> Dict[str, float]:
    """Median seconds of each function, called in turn round after round
    (after one warm-up round), so that drifting machine load hits all."""
    times = {name: [] for name in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if r:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_bytes(fn: Callable[[], None], device: str) -> int:
    """Peak memory allocated by ``fn`` above what was allocated before (on
    CPU from the profiler's allocation events)."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    # The 'torch' row keeps its slab scratch between calls: drop it, so that
    # the measured call allocates (and is charged for) all of it.
    torch_scan.release_workspace()
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
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best / 1e9


def card_bandwidth() -> float:
    """Peak DRAM bandwidth of the current CUDA card in GB/s, or NaN."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock = getattr(props, 'memory_clock_rate', None)  # kHz
    width = getattr(props, 'memory_bus_width', None)  # bits
    return 2 * clock * 1e3 * width / 8 / 1e9 if clock and width else math.nan


def cpp_scratch(batch: int, dim: int, length: int, backward: bool) -> int:
    """Bytes of the compiled kernel's scratch (allocated outside PyTorch's
    allocator) over the threads that get one of its (sample, channel
    block) tasks."""
    if cpu.EXT is None:
        return 0
    tasks = batch * -(-dim // cpu.EXT.CHANNEL_BLOCK)
    threads = min(torch.get_num_threads(), tasks)
    return threads * cpu.EXT.scratch_bytes(length, 1, 2, False, backward,
                                           False)


def ref_backward_bytes(batch: int, dim: int, length: int) -> int:
    """Rough memory of ``ref``'s autograd backward: every step's slice
    gradient is a zero-padded copy of a (b, 2d, L) input, O(L^2)."""
    return 3 * length * batch * 2 * dim * length * 4


def scan_calls(backend: str, batch: int, dim: int, length: int,
               device: str = 'cpu') -> Tuple[Callable, Callable, int]:
    """(forward without autograd, forward + backward of every input, bytes
    of the inputs) of one two-direction scan."""
    ins = scan_inputs(batch, dim, length, device, requires_grad=True)
    gy = torch.randn(batch, dim, length, device=device)

    def fwd():
        with torch.no_grad():
            selective_scan_bidirectional(*ins, backend=backend)

    def fwd_bwd():
        y = selective_scan_bidirectional(*ins, backend=backend)
        torch.autograd.grad(y, ins, gy)

    return fwd, fwd_bwd, sum(t.numel() * t.element_size() for t in ins)


def measure(backend: str, batch: int, dim: int, length: int, device: str,
            min_time: float, backward: bool = True) -> Dict[str, float]:
    """Best times, achieved bandwidth (compulsory traffic over time) and
    peak extra memory (as a multiple of the inputs) of one scan; the
    forward + backward entries are NaN without ``backward``."""
    fwd, fwd_bwd, in_bytes = scan_calls(backend, batch, dim, length, device)
    elems, bc = batch * dim * length, 2 * 2 * batch * length
    fwd_bytes, bwd_bytes = 4 * (4 * elems + bc), 4 * (8 * elems + 2 * bc)
    nan = math.nan
    t_f = best_time(fwd, device, min_time)
    t_fb = best_time(fwd_bwd, device, min_time) if backward else nan
    extra_f = extra_fb = 0
    if backend == 'cpp' and device == 'cpu':
        extra_f = cpp_scratch(batch, dim, length, False)
        extra_fb = max(extra_f, cpp_scratch(batch, dim, length, True))
    return dict(fwd=t_f, fwd_bwd=t_fb, fwd_gbs=fwd_bytes / t_f / 1e9,
                fwd_bwd_gbs=(fwd_bytes + bwd_bytes) / t_fb / 1e9,
                mem_fwd=(peak_bytes(fwd, device) + extra_f) / in_bytes,
                mem_fwd_bwd=((peak_bytes(fwd_bwd, device) + extra_fb) /
                             in_bytes if backward else nan))


def depth_weighted(times: Sequence[float], variant: str) -> float:
    """Sum of per-stage times weighted by the stage's MobileMamba blocks
    (one SS2D each): the scan time of one forward of the backbone."""
    depths = {'T2': (1, 2, 2), 'T4': (1, 2, 2), 'S6': (1, 2, 2)}.get(
        variant, (2, 3, 2))
    return sum(t * n for t, n in zip(times, depths))
