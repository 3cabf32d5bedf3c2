"""Where splitting the native scan over threads starts to pay, per runtime.

    python tools/analysis_tools/scan_parallel_cutoff.py [--runtime onnxruntime executorch]
        [--rounds 7] [--iters 30]
    python tools/analysis_tools/scan_parallel_cutoff.py --whole-model 131072 0
        [--runtime ...] [--pairs 3] [--threads 2] [--work-dir work_dirs/benchmark_deploy]

The runtime kernels (``ops/csrc/scan_native.h``) run a scan in the calling
thread when it has fewer than ``kMinParallelWork`` recurrence steps
(batch x channels x length x directions x states; default 0) and on the
runtime's thread pool otherwise. This tool measures where splitting pays:
it compiles each runtime's kernel library with the cutoff at 0 (every scan
split) into a temporary folder, and times a graph holding only the scan at SS2D's sizes
(MobileMamba-T2 at 192 px, then longer sequences) at 1 and 2 threads,
interleaved in rounds in this process (onnxruntime's threads do not spin
between runs, as in ``benchmark_deploy.py``). It prints the median time
per scan and the 2-thread / 1-thread ratio: where it is above 1 a second
thread costs more than it saves. The pool is asleep between runs here
(nothing else runs), which is the worst case; inside a whole model the
delegate before the scan leaves it awake, so compare the whole-model
benchmarks before raising the cutoff (docs/deployment.md#native-threads).

``--whole-model A B`` compares two cutoffs on whole programs instead: the
native T2 files and the MobileNetV3-Large files that ``benchmark_deploy.py
--native-scan`` wrote to ``--work-dir`` (fp32 and int8), with the library
built at each cutoff. ExecuTorch registers one kernel library per process,
so each (cutoff, runtime) runs in its own process, alternating A and B for
``--pairs`` pairs; each prints T2 / MobileNetV3-Large (medians of 5 x 20
runs at ``--threads``).
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


WHOLE_MODEL_FILES = {
    'onnxruntime': {'fp32': ('t2_native_int8_fp32.onnx',
                             'mobilenetv3-large_int8_fp32.onnx'),
                    'int8': ('t2_native_int8.onnx',
                             'mobilenetv3-large_int8.onnx')},
    'executorch': {'fp32': ('t2_native_fp32.pte',
                            'mobilenetv3-large_fp32.pte'),
                   'int8': ('t2_native_int8.pte',
                            'mobilenetv3-large_int8.pte')},
}


def variant_folder(runtime: str, cutoff: int, root: Path) -> Path:
    """A library folder as the runtime module expects it (library and build
    record), built with ``cutoff``."""
    import shutil

    from mmmobilemamba.deploy.native import executorch as et
    from mmmobilemamba.deploy.native import onnxruntime as ort_native
    from mmmobilemamba.deploy.native.build import CSRC, compile_shared
    folder = root / f'{runtime}_{cutoff}'
    define = f'MMMOBILEMAMBA_MIN_PARALLEL_WORK={cutoff}'
    if runtime == 'onnxruntime':
        compile_shared([CSRC / 'ort_scan.cpp'], folder / ort_native.LIBRARY.name,
                       include_dirs=[ort_native.headers_dir()],
                       defines=[define])
        shutil.copy(ort_native.RECORD, folder / ort_native.RECORD.name)
        return folder
    paths = et.wheel_paths()
    compile_shared([CSRC / 'et_scan.cpp'], folder / et.LIBRARY_NAME,
                   include_dirs=[paths['include'], paths['c10']],
                   library_dirs=[paths['lib']],
                   libraries=['executorch', 'executorch_threadpool'],
                   defines=[*et.DEFINES, 'ET_USE_THREADPOOL', define])
    et.library_path()  # the installed record exists and fits
    shutil.copy(et.LIBRARY_DIR / et.INFO_NAME, folder / et.INFO_NAME)
    return folder


def whole_model_worker(runtime: str, folder: str, work_dir: str,
                       threads: int) -> str:
    """One process: the programs with the library in ``folder``; returns
    'fp32 RATIO int8 RATIO'."""
    from mmmobilemamba.deploy.native import executorch as et
    from mmmobilemamba.deploy.native import onnxruntime as ort_native
    from mmmobilemamba.deploy.runtimes import make_runner
    if runtime == 'onnxruntime':
        ort_native.LIBRARY = Path(folder) / ort_native.LIBRARY.name
        ort_native.RECORD = Path(folder) / ort_native.RECORD.name
    else:
        et.LIBRARY_DIR = Path(folder)
    runs, inputs = {}, {}
    for precision, names in WHOLE_MODEL_FILES[runtime].items():
        for name, size in zip(names, (192, 224)):
            key = (precision, name)
            runs[key] = make_runner(runtime, str(Path(work_dir) / name),
                                    threads)
            x = torch.randn(1, 3, size, size)
            inputs[key] = x.numpy() if runtime == 'onnxruntime' else x
    for key, run in runs.items():
        for _ in range(3):
            run(inputs[key])
    times = {key: [] for key in runs}
    for _ in range(5):
        for key, run in runs.items():
            for _ in range(20):
                start = time.perf_counter()
                run(inputs[key])
                times[key].append(time.perf_counter() - start)
    med = {key: statistics.median(v) for key, v in times.items()}
    return ' '.join(
        f'{p} {med[(p, t2)] / med[(p, peer)]:.3f}'
        for p, (t2, peer) in WHOLE_MODEL_FILES[runtime].items())


def whole_model(args) -> None:
    import subprocess
    import sys
    with tempfile.TemporaryDirectory() as tmp:
        folders = {(r, c): variant_folder(r, c, Path(tmp))
                   for r in args.runtime for c in args.whole_model}
        print(f'| runtime | cutoff | pair | T2 / MNv3-L at {args.threads} '
              'thread(s) |')
        print('|---|---|---|---|')
        for runtime in args.runtime:
            for pair in range(args.pairs):
                for cutoff in args.whole_model:
                    res = subprocess.run(
                        [sys.executable, __file__, '--worker', runtime,
                         str(folders[(runtime, cutoff)]), args.work_dir,
                         str(args.threads)], capture_output=True, text=True)
                    if res.returncode != 0:
                        raise RuntimeError(res.stderr[-2000:])
                    print(f'| {runtime} | {cutoff} | {pair + 1} | '
                          f'{res.stdout.strip().splitlines()[-1]} |',
                          flush=True)


def time_runtime(runtime: str, rounds: int, iters: int,
                 folder: Path) -> List[tuple]:
    # every scan split (cutoff 0), whatever the installed build does
    from mmmobilemamba.deploy.native import executorch as et
    from mmmobilemamba.deploy.native import onnxruntime as ort_native
    lib = str(variant_folder(runtime, 0, folder) /
              (ort_native.LIBRARY.name if runtime == 'onnxruntime'
               else et.LIBRARY_NAME))
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
    import sys
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['--worker']:  # one process of --whole-model
        runtime, folder, work_dir, threads = argv[1:5]
        print(whole_model_worker(runtime, folder, work_dir, int(threads)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runtime', nargs='+',
                        default=['onnxruntime', 'executorch'],
                        choices=['onnxruntime', 'executorch'])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--iters', type=int, default=30)
    parser.add_argument('--whole-model', type=int, nargs=2, default=None,
                        metavar=('A', 'B'), help='compare two cutoffs on the '
                        'benchmark_deploy.py --native-scan files')
    parser.add_argument('--pairs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--work-dir', default='work_dirs/benchmark_deploy')
    args = parser.parse_args(argv)
    if args.whole_model:
        whole_model(args)
        return 0
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
