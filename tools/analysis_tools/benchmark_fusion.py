"""Speed of a MobileMamba classifier before and after BN fusion (CPU).

    python tools/analysis_tools/benchmark_fusion.py [--arch T2] [--size 192]
        [--batch 32] [--rounds 7] [--iters 2] [--threads N]
        [--scan-backend NAME]

Builds the classifier of configs/_base_/models/mobilemamba-{arch}.py (random
weights with random BN statistics), makes the inference form with
``mmmobilemamba.deploy.convert(model, 'eager-cpu')``
and times both in this one process, in eval mode under
``torch.inference_mode``: after a warm-up, rounds alternate between the two
models (and which goes first) so that drifting machine load affects both
alike. Each round records wall-clock time and the process's CPU time
(``time.process_time``); on a busy machine the CPU time, and the fastest
round, are far less disturbed by other processes than the median wall
time. It prints, per model, the median and best seconds per batch of both
clocks, the speed-up ratios (unfused / fused; the headline is the median
over rounds of each round's back-to-back ratio) and the largest relative
difference of the two models' logits.
"""
import argparse
import os.path as osp
import platform
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='T2',
                        choices=['T2', 'T4', 'S6', 'B1', 'B2', 'B4'])
    parser.add_argument('--size', type=int, default=192, help='input H = W')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--rounds', type=int, default=7,
                        help='timed rounds per model (median is reported)')
    parser.add_argument('--iters', type=int, default=2,
                        help='forward passes per round')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s)')
    parser.add_argument('--scan-backend', default=None,
                        help="selective-scan backend ('ref', 'torch'); "
                        'default: the fastest available on CPU')
    return parser.parse_args(argv)


def build(arch: str, scan_backend):
    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'models',
                 f'mobilemamba-{arch.lower()}.py'))
    cfg.model.backbone.scan_backend = scan_backend
    cfg.model.pop('train_cfg', None)
    model = MODELS.build(cfg.model)
    from mmmobilemamba.analysis.random_norms import randomize_norms
    # non-trivial BN statistics, as after training
    return randomize_norms(model).eval()


def time_round(model, x, iters: int):
    """(wall seconds, CPU seconds) per forward pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        model(x, mode='tensor')
    return ((time.perf_counter() - wall) / iters,
            (time.process_time() - cpu) / iters)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmmobilemamba.deploy import convert
    from mmmobilemamba.ops.scan import default_backend
    backend = args.scan_backend or default_backend(torch.device('cpu'))
    unfused = build(args.arch, args.scan_backend)
    fused = convert(unfused, 'eager-cpu')
    x = torch.rand(args.batch, 3, args.size, args.size)
    times = {'unfused': [], 'fused': []}
    models = {'unfused': unfused, 'fused': fused}
    with torch.inference_mode():
        diff = ((fused(x, mode='tensor') - unfused(x, mode='tensor')).abs()
                .max() / unfused(x, mode='tensor').abs().max()).item()
        for name in models:  # warm-up
            time_round(models[name], x, 1)
        for r in range(args.rounds):
            order = ('unfused', 'fused') if r % 2 == 0 else ('fused',
                                                              'unfused')
            for name in order:
                times[name].append(time_round(models[name], x, args.iters))
    print(f'MobileMamba-{args.arch} classifier, input {args.batch}x3x'
          f'{args.size}x{args.size}, CPU ({platform.processor() or "cpu"}, '
          f'{torch.get_num_threads()} threads), torch {torch.__version__}, '
          f'scan backend {backend!r}')
    print(f'{args.rounds} rounds x {args.iters} passes per model, '
          's/batch (median / best):')
    for clock, i in (('wall', 0), ('cpu', 1)):
        stats = {}
        for name in ('unfused', 'fused'):
            values = [t[i] for t in times[name]]
            stats[name] = (statistics.median(values), min(values))
            print(f'  {clock:4s} {name:7s}: {stats[name][0]:.4f} / '
                  f'{stats[name][1]:.4f}')
        # each round times both models back to back: the ratio within a
        # round cancels load that drifts slowly between rounds
        paired = statistics.median(
            u[i] / f[i] for u, f in zip(times['unfused'], times['fused']))
        print(f'  {clock:4s} speed-up (unfused / fused): paired median '
              f'{paired:.3f}x, ratio of medians '
              f'{stats["unfused"][0] / stats["fused"][0]:.3f}x, ratio of '
              f'best {stats["unfused"][1] / stats["fused"][1]:.3f}x')
    print(f'max relative logit difference: {diff:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
