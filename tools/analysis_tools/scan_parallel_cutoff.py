"""Where splitting the native scan over threads starts to pay, per runtime.

    python tools/analysis_tools/scan_parallel_cutoff.py [--runtime onnxruntime executorch]
        [--rounds 7] [--iters 30]

The runtime kernels (``ops/csrc/scan_native.h``) run a scan in the calling
thread when it has fewer than ``kMinParallelWork`` recurrence steps
(batch x channels x length x directions x states) and on the runtime's
thread pool otherwise. This tool measures that cutoff: it compiles each
runtime's kernel library with the cutoff at 0 (every scan split) into a
temporary folder, and times a graph holding only the scan at SS2D's sizes
(MobileMamba-T2 at 192 px, then longer sequences) at 1 and 2 threads,
interleaved in rounds in this process (onnxruntime's threads do not spin
between runs, as in ``benchmark_deploy.py``). It prints the median time
per scan and the 2-thread / 1-thread ratio: where it is above 1 a second
thread costs more than it saves, and the scan should stay serial.

ExecuTorch registers one kernel library per process, so run this tool in
a process that has not loaded the installed one (a fresh one does not).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch

#: (dim, length, N): SS2D's scans in T2 at 192 px (d_inner, H*W, d_state),
#: then the first stage's at 384 and 768 px, and one long sequence.
SHAPES = ((448, 9, 1), (384, 36, 1), (224, 144, 1), (224, 576, 1),
          (224, 2304, 1), (384, 2304, 1), (224, 9216, 1))
K = 2
NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'bias')


def inputs(dim: int, length: int, n: int) -> Tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, dim, length, generator=g),
            torch.randn(1, K, dim, length, generator=g) * .5,
            -torch.rand(K, dim, n, generator=g) - .1,
            torch.randn(1, K, n, length, generator=g),
            torch.randn(1, K, n, length, generator=g),
            torch.randn(K, dim, generator=g),
            torch.randn(K, dim, generator=g) * .1)


def ort_runners(lib: str, args, threads: int) -> Callable:
    import onnxruntime as ort
    from onnx import TensorProto, helper
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT,
                                           list(a.shape))
             for n, a in zip(NAMES, args)]
    node = helper.make_node('SelectiveScan', list(NAMES), ['y'],
                            domain='mmmobilemamba')
    graph = helper.make_graph([node], 'scan', value, [
        helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid('', 17), helper.make_opsetid('mmmobilemamba', 1)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    opts.register_custom_ops_library(lib)
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=['CPUExecutionProvider'])
    feed = {n: a.numpy() for n, a in zip(NAMES, args)}
    return lambda: session.run(None, feed)


def et_runner(args, folder: Path) -> Callable:
    from executorch.exir import to_edge
    from executorch.runtime import Runtime

    from mmmobilemamba.deploy.native.ops import selective_scan_native

    class Scan(torch.nn.Module):

        def forward(self, *a):
            return selective_scan_native(*a)

    program = to_edge(torch.export.export(Scan(), args)).to_executorch()
    path = folder / f'scan_{args[0].shape[1]}_{args[0].shape[2]}.pte'
    path.write_bytes(program.buffer)
    method = Runtime.get().load_program(str(path)).load_method('forward')
    return lambda: method.execute(list(args))


def build_variant(runtime: str, folder: Path) -> str:
    """The runtime's kernel library with every scan split (cutoff 0)."""
    from mmmobilemamba.deploy.native.build import CSRC, compile_shared
    define = 'MMMOBILEMAMBA_MIN_PARALLEL_WORK=0'
    if runtime == 'onnxruntime':
        from mmmobilemamba.deploy.native.onnxruntime import headers_dir
        return str(compile_shared([CSRC / 'ort_scan.cpp'],
                                  folder / 'ort_split.so',
                                  include_dirs=[headers_dir()],
                                  defines=[define]))
    from mmmobilemamba.deploy.native import executorch as et
    paths = et.wheel_paths()
    return str(compile_shared(
        [CSRC / 'et_scan.cpp'], folder / 'et_split.so',
        include_dirs=[paths['include'], paths['c10']],
        library_dirs=[paths['lib']],
        libraries=['executorch', 'executorch_threadpool'],
        defines=[*et.DEFINES, 'ET_USE_THREADPOOL', define]))


def time_runtime(runtime: str, rounds: int, iters: int,
                 folder: Path) -> List[tuple]:
    lib = build_variant(runtime, folder)
    rows = []
    if runtime == 'executorch':
        import ctypes

        from mmmobilemamba.deploy.xnnpack import set_threads
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    for dim, length, n in SHAPES:
        args = inputs(dim, length, n)
        if runtime == 'onnxruntime':
            runs = {t: ort_runners(lib, args, t) for t in (1, 2)}
        else:
            run = et_runner(args, folder)
            runs = {t: run for t in (1, 2)}
        times: Dict[int, List[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for t, run in runs.items():
                if runtime == 'executorch':
                    set_threads(t)
                run()  # warm-up after a resize
                start = time.perf_counter()
                for _ in range(iters):
                    run()
                times[t].append(1e6 * (time.perf_counter() - start) / iters)
        t1, t2 = (statistics.median(times[t]) for t in (1, 2))
        rows.append((runtime, dim, length, n, dim * length * K * n, t1, t2))
    return rows


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runtime', nargs='+',
                        default=['onnxruntime', 'executorch'],
                        choices=['onnxruntime', 'executorch'])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--iters', type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for runtime in args.runtime
                for row in time_runtime(runtime, args.rounds, args.iters,
                                        Path(tmp))]
    print('| runtime | d | L | N | steps | 1 thread (us) | 2 threads (us) '
          '| 2 / 1 |')
    print('|---|---|---|---|---|---|---|---|')
    for runtime, dim, length, n, work, t1, t2 in rows:
        print(f'| {runtime} | {dim} | {length} | {n} | {work} | {t1:.1f} | '
              f'{t2:.1f} | {t2 / t1:.2f} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
