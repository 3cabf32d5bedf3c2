"""Time two checkouts of mmmobilemamba in one run, interleaved, each against
MobileNetV3-Large (eager PyTorch, CPU).

    python tools/analysis_tools/compare_revisions.py BEFORE_DIR AFTER_DIR
        [--config configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py]
        [--peer mobilenet-v3-large_8xb128_in1k] [--peer-size 224] [--rounds 7]

Each checkout runs in a worker process of its own (``PYTHONPATH`` is the
checkout, so both can be imported in one run; each needs its compiled ops,
e.g. ``python setup.py build_ext --inplace`` there). The driver asks the
workers for one round of timings in turn, so both see the same machine
state, and prints medians over rounds of

* latency at batch 1 with 1 and 2 threads, and
* throughput at batch 32 (2 threads),

for the MobileMamba classifier in its CPU inference form at its config's
test crop and for the peer at ``--peer-size``, plus the ratio MobileMamba / peer per checkout (what "no regression"
compares: absolute numbers move with the machine).

The inference form is the checkout's own: ``deploy.convert(model,
'eager-cpu')``, or ``models.fusion.fuse_bn(model)`` in checkouts older
than the ``deploy`` package (their blocks chose fast paths at run time).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

SETTINGS = (('latency b1 1 thread (ms)', 1, 1),
            ('latency b1 2 threads (ms)', 1, 2),
            ('throughput b32 2 threads (img/s)', 32, 2))


def _worker(config: str, peer: str, peer_size: str) -> None:
    """Serve timing rounds on stdin/stdout for the checkout on sys.path."""
    import torch
    try:
        from mmmobilemamba.analysis.timing import build_model, build_peer
        from mmmobilemamba.deploy import convert

        def inference_form(m):
            return convert(m, 'eager-cpu')
    except ImportError:  # a checkout before the deploy package
        sys.path.insert(0, osp.join(os.getcwd(), 'tools', 'analysis_tools'))
        from benchmark import build_model, build_peer
        from mmmobilemamba.models.fusion import fuse_bn as inference_form
    model, size, _ = build_model(config)
    models = {'mobilemamba': inference_form(model).eval(),
              'peer': build_peer(peer).eval()}
    sizes = {'mobilemamba': tuple(size or (224, 224)),
             'peer': (int(peer_size), ) * 2}
    print(json.dumps({'ready': True}), flush=True)
    for line in sys.stdin:
        name, batch, threads, iters = json.loads(line)
        torch.set_num_threads(threads)
        x = torch.randn(batch, 3, *sizes[name])
        with torch.inference_mode():
            models[name](x)  # warm-up at this setting
            start = time.perf_counter()
            for _ in range(iters):
                models[name](x)
            seconds = (time.perf_counter() - start) / iters
        print(json.dumps({'seconds': seconds}), flush=True)


class Worker:
    """One checkout's worker process."""

    def __init__(self, checkout: str, config: str, peer: str,
                 peer_size: int) -> None:
        env = dict(os.environ, PYTHONPATH=checkout)
        self.proc = subprocess.Popen(
            [sys.executable, osp.abspath(__file__), '--worker', config, peer,
             str(peer_size)],
            cwd=checkout, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError(f'the worker for {checkout} failed to start '
                               '(see its traceback above)')

    def time(self, name: str, batch: int, threads: int, iters: int) -> float:
        self.proc.stdin.write(json.dumps([name, batch, threads, iters]) + '\n')
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())['seconds']

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkouts', nargs='*', metavar='DIR',
                        help='the two checkouts (before, after)')
    parser.add_argument('--config',
                        default='configs/mobilemamba/mobilemamba-t2_8xb128_'
                        'in1k.py', help='relative to each checkout')
    parser.add_argument('--peer', default='mobilenet-v3-large_8xb128_in1k')
    parser.add_argument('--peer-size', type=int, default=224,
                        help="the peer's input size (its own test crop)")
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--worker', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    if len(args.checkouts) != 2:
        parser.error('give two checkouts: BEFORE_DIR AFTER_DIR')
    dirs = [osp.abspath(d) for d in args.checkouts]
    for d in dirs:
        if not osp.isfile(osp.join(d, args.config)):
            raise SystemExit(f'{d} has no {args.config}')
    workers = [Worker(d, args.config, args.peer, args.peer_size)
               for d in dirs]
    times = {}  # (checkout, setting, model) -> [seconds]
    try:
        for _ in range(args.rounds):
            for label, batch, threads in SETTINGS:
                iters = 20 if batch == 1 else 2
                for name in ('mobilemamba', 'peer'):
                    for i, w in enumerate(workers):
                        times.setdefault((i, label, name), []).append(
                            w.time(name, batch, threads, iters))
    finally:
        for w in workers:
            w.close()
    print(f'{args.config} vs {args.peer}@{args.peer_size}, medians of '
          f'{args.rounds} interleaved rounds')
    print(f'{"setting":34s} {"checkout":8s} {"MobileMamba":>12s} '
          f'{"peer":>10s} {"MM/peer":>7s}')
    for label, batch, _ in SETTINGS:
        for i, tag in enumerate(('before', 'after')):
            mm = statistics.median(times[(i, label, 'mobilemamba')])
            pe = statistics.median(times[(i, label, 'peer')])
            if batch == 1:  # latency: lower is better, ratio = time ratio
                row = (mm * 1e3, pe * 1e3, mm / pe)
            else:  # throughput: ratio = peer time / MobileMamba time
                row = (batch / mm, batch / pe, pe / mm)
            print(f'{label:34s} {tag:8s} {row[0]:12.2f} {row[1]:10.2f} '
                  f'{row[2]:7.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
