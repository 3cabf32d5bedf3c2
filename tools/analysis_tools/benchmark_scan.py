"""Benchmark the selective-scan backends on MobileMamba's SS2D shapes.

    python tools/analysis_tools/benchmark_scan.py [--variants T2 B1 B4]
        [--size PX] [--batch 1 32] [--backends ref cpp torch]
        [--device cpu|cuda] [--threads N] [--min-time 0.3] [--targets]
        [--interleaved ROUNDS]

Every stage of every variant runs SS2D's call,
``selective_scan_bidirectional(u (b, d, L), delta (b, 2, d, L), A (2d, 1),
B/C (b, 2, 1, L), D (2d), delta_bias (2d), delta_softplus=True)`` in fp32
with d = d_inner and L = H * W of the stage (at ``--size``, default the
variant's resolution). Per backend, all in this one process: the forward
time (no autograd) and the forward + backward time (every input gradient),
best of repeated runs; the speed-up over ``ref``; the achieved bandwidth
(compulsory traffic over time) and the forward's share of a plain
``copy_`` of 256 MiB; the peak memory above what existed before the call,
as a multiple of the inputs (the compiled kernel's scratch, allocated
outside PyTorch, is added). ``ref``'s autograd needs memory quadratic in L:
its backward is skipped ('nan') above ``--ref-backward-gb``.

``--interleaved ROUNDS`` instead calls every backend in turn, round after
round, and prints medians and each backend's ratio to the first one: an
A/B comparison that drifting machine load affects equally.

A measurement tool, not a test: numbers depend on the machine and its load.
The functions are in :mod:`mmmobilemamba.analysis.scan_benchmark`.
"""
import argparse
import math
from typing import List, Optional

import torch

from mmmobilemamba.analysis import scan_benchmark as sb
from mmmobilemamba.ops.scan import available_backends, cpu

#: (label, variant, stage, batch, measure, minimum speed-up over 'ref').
TARGETS = (
    ('f+b b1 L=256 (B1 s1, 2 x 320 channels)', 'B1', 1, 1, 'fwd_bwd', 100),
    ('f+b b1 L=1024 (B4 s1, 2 x 320 channels)', 'B4', 1, 1, 'fwd_bwd', 200),
    ('fwd b32 L=1024 (B4 s1, 2 x 320 channels)', 'B4', 1, 32, 'fwd', 20),
)


def interleaved(args, backends: List[str]) -> None:
    """Medians of fwd and f+b per shape, backends called in turn."""
    print(f'{"shape":<28}' + ''.join(f'{b + " fwd":>14}{b + " f+b":>14}'
                                     for b in backends) + '   (ms; ratio '
          f'to {backends[0]})')
    totals = {}
    for variant in args.variants:
        for stage, (dim, length) in enumerate(
                sb.ss2d_shapes(variant, args.size), 1):
            for batch in args.batch:
                calls = {b: sb.scan_calls(b, batch, dim, length, args.device)
                         for b in backends}
                fwd = sb.interleaved_medians(
                    {b: c[0] for b, c in calls.items()}, args.device,
                    args.interleaved)
                fb = sb.interleaved_medians(
                    {b: c[1] for b, c in calls.items()}, args.device,
                    args.interleaved)
                row = f'{variant} s{stage} b{batch} d{dim} L{length}'
                cells = ''.join(
                    f'{fwd[b] * 1e3:>8.3f} {fwd[b] / fwd[backends[0]]:>4.2f}x'
                    f'{fb[b] * 1e3:>8.3f} {fb[b] / fb[backends[0]]:>4.2f}x'
                    for b in backends)
                print(f'{row:<28}{cells}', flush=True)
                for b in backends:
                    key = (variant, batch, b)
                    t = totals.setdefault(key, [[0.] * 3, [0.] * 3])
                    t[0][stage - 1], t[1][stage - 1] = fwd[b], fb[b]
    print('per backbone forward (stage times x blocks per stage):')
    for (variant, batch, b), (fwd, fb) in totals.items():
        first = totals[(variant, batch, backends[0])]
        f, g = sb.depth_weighted(fwd, variant), sb.depth_weighted(fb, variant)
        print(f'  {variant} b{batch} {b}: fwd {f * 1e3:.3f} ms '
              f'({f / sb.depth_weighted(first[0], variant):.2f}x), f+b '
              f'{g * 1e3:.3f} ms '
              f'({g / sb.depth_weighted(first[1], variant):.2f}x)')


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=['T2', 'B1', 'B4'],
                        choices=list(sb.VARIANTS))
    parser.add_argument('--size', type=int, default=None,
                        help="input pixels (default: the variant's)")
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
    parser.add_argument('--interleaved', type=int, default=0,
                        metavar='ROUNDS', help='A/B medians instead')
    parser.add_argument('--ref-backward-gb', type=float, default=8.,
                        help='skip ref forward+backward (and its ratios) '
                        'where its autograd would need more than this')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = args.backends or [b for b in available_backends(args.device)
                                 if b != 'portable']
    print(f'device={args.device} threads={torch.get_num_threads()} '
          f'torch={torch.__version__} backends={backends} '
          f'cpp-isa={cpu.isa()}')
    if args.interleaved:
        return interleaved(args, backends)
    backends = ['ref'] + [b for b in backends if b != 'ref']  # the baseline
    copy_gbs = sb.copy_bandwidth(args.device)
    print(f'copy_ bandwidth of a 256 MiB buffer: {copy_gbs:.2f} GB/s')
    if args.device == 'cuda':
        print(f'card: {torch.cuda.get_device_name()}, peak DRAM bandwidth '
              f'{sb.card_bandwidth():.0f} GB/s')
    print(f'{"shape":<24}{"backend":<9}{"fwd ms":>10}{"x ref":>8}{"GB/s":>7}'
          f'{"%copy":>6}{"f+b ms":>10}{"x ref":>8}{"GB/s":>7}{"mem fwd":>9}'
          f'{"mem f+b":>9}   (mem: peak extra / inputs)')
    cases = [(v, s, b) for v in args.variants
             for s in (1, 2, 3) for b in args.batch]
    if args.targets:
        cases = [(v, s, b) for _, v, s, b, _, _ in TARGETS]
    results = {}
    for variant, stage, batch in cases:
        dim, length = sb.ss2d_shapes(variant, args.size)[stage - 1]
        shape = f'{variant} s{stage} b{batch} d{dim} L{length}'
        ref = None
        for backend in backends:
            backward = backend != 'ref' or (
                sb.ref_backward_bytes(batch, dim, length) <=
                args.ref_backward_gb * 2**30 and not (args.targets and
                                                      batch == 32))
            r = sb.measure(backend, batch, dim, length, args.device,
                           args.min_time, backward)
            ref = ref or r
            results[(variant, stage, batch, backend)] = (r, ref)
            print(f'{shape:<24}{backend:<9}{r["fwd"] * 1e3:>10.3f}'
                  f'{ref["fwd"] / r["fwd"]:>8.1f}{r["fwd_gbs"]:>7.2f}'
                  f'{100 * r["fwd_gbs"] / copy_gbs:>6.0f}'
                  f'{r["fwd_bwd"] * 1e3:>10.3f}'
                  f'{ref["fwd_bwd"] / r["fwd_bwd"]:>8.1f}'
                  f'{r["fwd_bwd_gbs"]:>7.2f}{r["mem_fwd"]:>9.2f}'
                  f'{r["mem_fwd_bwd"]:>9.2f}', flush=True)
            shape = ''
    fastest = backends[1] if len(backends) > 1 else None
    for label, variant, stage, batch, what, want in TARGETS:
        got = results.get((variant, stage, batch, fastest))
        if got is not None and not math.isnan(got[1][what]):
            ratio = got[1][what] / got[0][what]
            print(f'target {label}, {fastest!r} over ref: {ratio:.0f}x '
                  f'(>= {want}x) {"met" if ratio >= want else "MISSED"}')


if __name__ == '__main__':
    main()
