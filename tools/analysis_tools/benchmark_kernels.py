"""Time the CPU inference kernels of the ``'eager-cpu'`` deploy form against
what they replace, on the shapes a MobileMamba model runs.

* depthwise: every depthwise convolution of the model (shapes recorded from
  one forward at ``--batch``), ``torch.ops.mmmobilemamba.depthwise_conv2d``
  against ``F.conv2d`` (oneDNN), channels-last input as in the deploy
  model; the work column is what
  :data:`mmmobilemamba.ops.depthwise_conv.MAX_COMPILED_WORK` compares with;
* pointwise: every deploy 1x1 layer, the packed oneDNN linear
  (:mod:`mmmobilemamba.ops.packed_linear`) against ``addmm``.

Each pair is timed interleaved (A, B, A, B, ...), medians of ``--iters``
calls; the ratio is new / old (below 1 is faster). Example::

    python tools/analysis_tools/benchmark_kernels.py \\
        configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py --batch 1 --threads 1
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a MobileMamba classifier config')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--shape', type=int, nargs='+', metavar='H [W]',
                        help="input size; default: the config's test crop")
    parser.add_argument('--threads', type=int, help='torch intra-op threads')
    parser.add_argument('--iters', type=int, default=200,
                        help='timed calls per kernel and shape')
    args = parser.parse_args(argv)
    if args.batch < 1 or args.iters < 1:
        parser.error('--batch and --iters must be >= 1')
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    return args


def record_shapes(model: torch.nn.Module, x: torch.Tensor
                  ) -> Tuple[List[tuple], List[tuple]]:
    """The inputs of every depthwise conv and deploy 1x1 layer in one
    forward: (module, input shape) pairs, in call order, deduplicated."""
    from mmmobilemamba.deploy.forms.eager_cpu import (
        CompiledDepthwiseConv2d as DepthwiseConv2d, PointwiseConv2d)
    seen: Dict[str, list] = {'dw': [], 'pw': []}
    keys = set()

    def hook(module, inputs):
        kind = 'dw' if isinstance(module, DepthwiseConv2d) else 'pw'
        key = (kind, tuple(inputs[0].shape), tuple(module.weight.shape),
               module.stride)
        if key not in keys:
            keys.add(key)
            seen[kind].append((module, tuple(inputs[0].shape)))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, (DepthwiseConv2d, PointwiseConv2d))]
    with torch.inference_mode():
        model(x, mode='tensor')
    for h in handles:
        h.remove()
    return seen['dw'], seen['pw']


def interleaved(a: Callable, b: Callable, iters: int) -> Tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, called alternately."""
    for _ in range(10):
        a()
        b()
    ta, tb = [], []
    for _ in range(iters):
        start = time.perf_counter()
        a()
        ta.append(time.perf_counter() - start)
        start = time.perf_counter()
        b()
        tb.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmmobilemamba.analysis.timing import build_model
    from mmmobilemamba.deploy import convert
    from mmmobilemamba.ops import packed_linear
    from mmmobilemamba.ops.depthwise_conv import (MAX_COMPILED_KERNEL,
                                                  MAX_COMPILED_WORK,
                                                  depthwise_missing,
                                                  use_compiled)
    if depthwise_missing() is not None:
        raise SystemExit(depthwise_missing())
    model, size, _ = build_model(args.config)
    model = convert(model, 'eager-cpu')
    if args.shape:
        size = (args.shape[0], args.shape[-1])
    x = torch.rand(args.batch, 3, *size)
    dws, pws = record_shapes(model, x)
    print(f'{osp.basename(args.config)} at {size[0]}x{size[1]}, batch '
          f'{args.batch}, {torch.get_num_threads()} thread(s); medians of '
          f'{args.iters} interleaved calls; the compiled kernel is used up '
          f'to MAX_COMPILED_WORK = {MAX_COMPILED_WORK} MACs and kernels of '
          f'side MAX_COMPILED_KERNEL = {MAX_COMPILED_KERNEL}')
    print('\n| depthwise input | kernel, stride | work (MACs) | F.conv2d (us) '
          '| compiled (us) | ratio | used |\n|---|---|---|---|---|---|---|')
    total_old = total_new = 0.
    with torch.inference_mode():
        for module, shape in dws:
            inp = torch.rand(shape).contiguous(
                memory_format=torch.channels_last)
            w, b = module.weight, module.bias
            pads = module.pads
            kh, kw = w.shape[-2:]
            oh = (shape[2] + 2 * pads[0] - kh) // module.stride[0] + 1
            ow = (shape[3] + 2 * pads[1] - kw) // module.stride[1] + 1
            work = shape[0] * oh * ow * shape[1] * kh * kw
            old, new = interleaved(
                lambda: F.conv2d(inp, w, b, module.stride, pads,
                                 groups=shape[1]),
                lambda: torch.ops.mmmobilemamba.depthwise_conv2d(
                    inp, w, b, list(module.stride), list(pads)), args.iters)
            used = use_compiled(inp, w, module.stride, pads, (1, 1))
            total_old += old
            total_new += new if used else old
            print(f'| {"x".join(map(str, shape))} | {kh}x{kw}, '
                  f'{module.stride[0]} | {work} | {old * 1e6:.1f} | '
                  f'{new * 1e6:.1f} | {new / old:.2f} | '
                  f'{"yes" if used else "no"} |')
        print(f'\ndepthwise, one of each shape: F.conv2d '
              f'{total_old * 1e6:.0f} '
              f'us, as dispatched {total_new * 1e6:.0f} us')
        print('\n| 1x1 rows x C -> C\' | addmm (us) | packed oneDNN (us) | '
              'ratio |\n|---|---|---|---|')
        total_old = total_new = 0.
        for module, shape in pws:
            rows = shape[0] * shape[2] * shape[3]
            tokens = torch.rand(rows, shape[1])
            w, b = module.weight, module.bias
            w2 = w.flatten(1)
            old, new = interleaved(
                lambda: torch.addmm(b, tokens, w2.t()),
                lambda: packed_linear.linear(tokens, w, b), args.iters)
            total_old += old
            total_new += new
            print(f'| {rows} x {shape[1]} -> {w.shape[0]} | {old * 1e6:.1f} '
                  f'| {new * 1e6:.1f} | {new / old:.2f} |')
        print(f'\n1x1, one of each shape: addmm {total_old * 1e6:.0f} us, '
              f'packed {total_new * 1e6:.0f} us')
    return 0


if __name__ == '__main__':
    sys.exit(main())
