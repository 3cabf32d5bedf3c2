"""Fuzz the checkpoint loader with mutated checkpoints.

    python tools/analysis_tools/fuzz_checkpoints.py [--cases 5000]
        [--seed 0] [--work-dir DIR] [--case-timeout 10] [--memory-gb 2]

Seeds: the three kinds of file the loader must read, made here with the
real writers: a checkpoint of this project's Runner (plain message hub), a
stock mmengine Runner checkpoint (HistoryBuffers, numpy arrays and scalars)
and a release checkpoint (weights only, torch's legacy non-zip format).
Each case mutates one seed, at the byte level (flips, truncation,
insertions, chunk copies) or at the pickle-opcode level (ops deleted,
duplicated or swapped; integers set to extremes; strings and GLOBAL names
replaced, e.g. a dtype by 'O' or a global by ``os.makedirs``; a payload
that would create a marker directory inserted). Mutated pickles are written
back into a valid zip archive, so the unpickler sees them rather than a
CRC error.

Cases run in a worker process that loads them one after another through
``mmmobilemamba.checkpoint.load_checkpoint_file`` and deep-copies what
loads (as a resume does). The worker's address space is capped at its
size after start-up plus ``--memory-gb``; a case that takes longer than
``--case-timeout`` seconds is killed. Outcomes:

- ``loaded``, ``refused`` (a CheckpointError or other exception whose
  message names the file): good;
- ``unnamed`` (an exception that does not name the file), ``signal``
  (the worker died), ``timeout``, ``payload`` (the marker was created):
  failures. The exit status is 1 if there is any.
"""
import argparse
import collections
import io
import json
import os
import os.path as osp
import pickletools
import random
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

GOOD = ('loaded', 'refused')
BAD = ('unnamed', 'signal', 'timeout', 'payload')


# ----------------------------------------------------------------------
# Seeds
# ----------------------------------------------------------------------
def _message_hub_state():
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'fuzz-{os.getpid()}')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', 1e-3)
    hub.update_info('eta', np.float64(12.5))
    hub.update_info('iter', 3)
    return hub.state_dict()


def write_seeds(folder: str) -> list:
    """Write the three seed checkpoints; return their paths."""
    from collections import OrderedDict

    import torch

    from mmmobilemamba.checkpoint.runner_state import plain_message_hub
    weights = OrderedDict(
        (f'backbone.layer{i}.weight', torch.randn(4, 3)) for i in range(3))
    weights['backbone.bn.num_batches_tracked'] = torch.tensor(5)
    meta = dict(epoch=1, iter=3, seed=0,
                cfg="model = dict(type='X', depth=3)\ngpu_ids = [0]\n",
                dataset_meta=dict(classes=('a', 'b')))
    optimizer = dict(state={0: dict(step=torch.tensor(3.),
                                    exp_avg=torch.zeros(4, 3))},
                     param_groups=[dict(lr=1e-3, params=[0])])
    project = dict(meta=dict(meta, config=meta['cfg']),
                   state_dict=weights, optimizer=optimizer,
                   message_hub=plain_message_hub(_message_hub_state()),
                   resume_state=dict(epoch=1, batch=0, rng=[[1, 2, 3]]))
    stock = dict(meta=meta, state_dict=weights, optimizer=optimizer,
                 message_hub=_message_hub_state())
    paths = [osp.join(folder, name) for name in
             ('project.pth', 'stock.pth', 'release.pth')]
    torch.save(project, paths[0])
    torch.save(stock, paths[1])
    torch.save(dict(model=weights), paths[2],
               _use_new_zipfile_serialization=False)
    return paths


# ----------------------------------------------------------------------
# Mutations
# ----------------------------------------------------------------------
GLOBALS = [
    ('os', 'makedirs'), ('posix', 'system'), ('builtins', 'eval'),
    ('builtins', 'getattr'), ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'), ('numpy', 'dtype'),
    ('numpy', 'ndarray'), ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    ('torch._utils', '_rebuild_tensor_v2'), ('collections', 'OrderedDict'),
    ('torch', 'FloatStorage'), ('torch', 'Size'), ('_codecs', 'encode'),
    ('builtins', 'set'), ('torch.nn.parameter', 'Parameter'),
]
STRINGS = ['O', 'V8', 'f8', 'i8', 'U5', '>', '|', 'storage', 'cpu', 'cuda:9',
           'statistics_methods', '_log_history', 'min', '__class__',
           '__dict__', '0', '../../etc/passwd', 'x' * 300]
INTS = [0, 1, -1, 2, 7, 255, 256, 65535, 2 ** 31 - 1, -2 ** 31, 2 ** 40,
        2 ** 62, 10 ** 12]


def _ops(data: bytes):
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # noqa: BLE001  (already mutated into nonsense)
        return []
    spans = []
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        spans.append((op, arg, pos, end))
    return spans


def _unicode(text: str) -> bytes:
    raw = text.encode('utf-8')
    return b'X' + struct.pack('<I', len(raw)) + raw


def _payload(marker: str) -> bytes:
    return (b'cos\nmakedirs\n' + _unicode(marker) + b'\x85R0')


def mutate_pickle(data: bytes, rng: random.Random, marker: str) -> bytes:
    """One opcode-level mutation of a pickle."""
    spans = _ops(data)
    if len(spans) < 3:
        return mutate_bytes(data, rng)
    i = rng.randrange(1, len(spans) - 1)
    op, arg, pos, end = spans[i]
    kind = rng.randrange(8)
    if kind == 0:  # delete an op
        return data[:pos] + data[end:]
    if kind == 1:  # duplicate an op
        return data[:end] + data[pos:end] + data[end:]
    if kind == 2:  # swap two ops
        j = rng.randrange(1, len(spans) - 1)
        a, b = sorted((i, j))
        if a == b:
            return data
        sa, sb = spans[a], spans[b]
        return (data[:sa[2]] + data[sb[2]:sb[3]] + data[sa[3]:sb[2]] +
                data[sa[2]:sa[3]] + data[sb[3]:])
    if kind == 3:  # a payload at an op boundary
        return data[:pos] + _payload(marker) + data[pos:]
    if kind == 4:  # replace a GLOBAL
        globs = [s for s in spans if s[0].name == 'GLOBAL']
        if globs:
            _, _, gpos, gend = rng.choice(globs)
            module, name = rng.choice(GLOBALS)
            return (data[:gpos] + f'c{module}\n{name}\n'.encode() +
                    data[gend:])
    if kind == 5:  # replace an integer
        ints = [s for s in spans if s[0].name in
                ('BININT', 'BININT1', 'BININT2', 'LONG1')]
        if ints:
            _, _, ipos, iend = rng.choice(ints)
            value = rng.choice(INTS)
            raw = value.to_bytes((value.bit_length() + 8) // 8 or 1,
                                 'little', signed=True)
            return data[:ipos] + b'\x8a' + bytes([len(raw)]) + raw + \
                data[iend:]
    if kind == 6:  # replace a string
        strs = [s for s in spans if s[0].name in
                ('BINUNICODE', 'SHORT_BINUNICODE', 'SHORT_BINSTRING')]
        if strs:
            _, _, spos, send = rng.choice(strs)
            return data[:spos] + _unicode(rng.choice(STRINGS)) + data[send:]
    return mutate_bytes(data, rng)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One byte-level mutation."""
    data = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and data:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1 and data:  # truncate
        del data[rng.randrange(len(data)):]
    elif kind == 2:  # insert random bytes
        at = rng.randrange(len(data) + 1)
        data[at:at] = bytes(rng.randrange(256)
                            for _ in range(rng.randint(1, 16)))
    elif kind == 3 and len(data) > 8:  # copy a chunk elsewhere
        a = rng.randrange(len(data) - 4)
        chunk = data[a:a + rng.randint(2, 64)]
        b = rng.randrange(len(data))
        data[b:b + len(chunk)] = chunk
    elif data:  # set a 4- or 8-byte field to an extreme
        at = rng.randrange(max(1, len(data) - 8))
        width = rng.choice((4, 8))
        data[at:at + width] = rng.choice(
            (b'\xff' * width, b'\x00' * width, b'\x7f' + b'\xff' *
             (width - 1)))
    return bytes(data)


def _rezip(original: bytes, changes: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, \
            zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            name = info.filename
            dst.writestr(name, changes.get(name, src.read(name)))
    return out.getvalue()


def make_case(seed: bytes, rng: random.Random, marker: str) -> bytes:
    """One mutated file from a seed file's bytes."""
    if seed[:4] != b'PK\x03\x04':  # legacy format: a stream of pickles
        return mutate_pickle(seed, rng, marker) if rng.random() < 0.6 \
            else mutate_bytes(seed, rng)
    roll = rng.random()
    if roll < 0.2:
        return mutate_bytes(seed, rng)
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        names = archive.namelist()
        pkl = next(n for n in names if n.endswith('/data.pkl'))
        data = archive.read(pkl)
        if roll < 0.85:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                data = mutate_pickle(data, rng, marker)
            return _rezip(seed, {pkl: data})
        # a storage record made shorter or longer than the pickle says
        records = [n for n in names if '/data/' in n]
        if not records:
            return mutate_bytes(seed, rng)
        name = rng.choice(records)
        raw = archive.read(name)
        raw = raw[:rng.randrange(len(raw) + 1)] if rng.random() < 0.7 \
            else raw + bytes(rng.randint(1, 64))
        return _rezip(seed, {name: raw})


# ----------------------------------------------------------------------
# The worker: loads cases one after another
# ----------------------------------------------------------------------
def _cap_memory(extra_gb: float) -> None:
    import resource
    with open('/proc/self/status') as f:
        vm = next(int(line.split()[1]) * 1024 for line in f
                  if line.startswith('VmSize:'))
    limit = vm + int(extra_gb * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker(memory_gb: float) -> None:
    """Read case paths from stdin, one a line; answer one JSON line each."""
    import copy
    import warnings

    import mmmobilemamba  # noqa: F401  (routes mmengine's loaders)
    from mmmobilemamba.checkpoint import load_checkpoint_file
    warnings.simplefilter('ignore')
    _cap_memory(memory_gb)
    print(json.dumps(dict(ready=True)), flush=True)
    for line in sys.stdin:
        path = line.strip()
        try:
            copy.deepcopy(load_checkpoint_file(path, map_location='cpu'))
            result = dict(outcome='loaded')
        except BaseException as err:  # noqa: BLE001
            named = path in str(err) or osp.basename(path) in str(err)
            result = dict(outcome='refused' if named else 'unnamed',
                          error=f'{type(err).__name__}: {str(err)[:300]}')
        print(json.dumps(result), flush=True)


class Worker:
    """A worker process, restarted after a crash or a time-out."""

    def __init__(self, memory_gb: float) -> None:
        self.memory_gb = memory_gb
        self.proc = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        env.pop('MMMOBILEMAMBA_TRUST_CHECKPOINTS', None)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, '--worker', '--memory-gb',
             str(self.memory_gb)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env)
        ready = self.proc.stdout.readline()
        if 'ready' not in ready:
            raise RuntimeError('the fuzz worker did not start')

    def run(self, path: str, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(path + '\n')
        self.proc.stdin.flush()
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                return dict(outcome='timeout')
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return dict(outcome='signal', error=f'worker exit {code}')
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def fuzz(cases: int, seed: int, work_dir: str, case_timeout: float,
         memory_gb: float, log=print) -> collections.Counter:
    """Run ``cases`` mutated checkpoints; return the count per outcome."""
    rng = random.Random(seed)
    seeds = write_seeds(work_dir)
    seed_bytes = [open(p, 'rb').read() for p in seeds]
    counts, reasons = collections.Counter(), collections.Counter()
    worker_proc = Worker(memory_gb)
    start = time.time()
    try:
        for i in range(cases):
            marker = osp.join(work_dir, f'PAYLOAD_RAN_{i}')
            which = i % len(seeds)
            data = make_case(seed_bytes[which], rng, marker)
            path = osp.join(work_dir, f'case_{i}.pth')
            with open(path, 'wb') as f:
                f.write(data)
            result = worker_proc.run(path, case_timeout)
            if osp.exists(marker):
                result = dict(outcome='payload', error=marker)
            counts[result['outcome']] += 1
            if result['outcome'] == 'refused':
                reasons[_reason(result['error'], path)] += 1
            if result['outcome'] in BAD:
                keep = osp.join(work_dir, f'failure_{i}.pth')
                os.replace(path, keep)
                log(f'case {i} ({osp.basename(seeds[which])}): '
                    f'{result["outcome"]} {result.get("error", "")} '
                    f'-> kept as {keep}')
            else:
                os.remove(path)
    finally:
        worker_proc.close()
    log(f'{cases} cases in {time.time() - start:.0f} s: ' + ', '.join(
        f'{k} {counts[k]}' for k in GOOD + BAD))
    log('most common refusals:')
    for reason, n in reasons.most_common(12):
        log(f'  {n:6d}  {reason}')
    return counts


def _reason(error: str, path: str) -> str:
    """An error message without the file name and numbers, for counting."""
    import re
    text = error.replace(path, 'FILE')
    text = text.split('. ')[0]
    return re.sub(r'\d+', 'N', text)[:150]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', type=int, default=5000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', help='where cases and failures go '
                        '(default: a temporary folder, removed if all pass)')
    parser.add_argument('--case-timeout', type=float, default=10.0)
    parser.add_argument('--memory-gb', type=float, default=2.0)
    parser.add_argument('--worker', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.memory_gb)
        return 0
    if args.cases < 1:
        parser.error('--cases must be >= 1')
    if args.work_dir:
        os.makedirs(args.work_dir, exist_ok=True)
        counts = fuzz(args.cases, args.seed, args.work_dir,
                      args.case_timeout, args.memory_gb)
    else:
        with tempfile.TemporaryDirectory(prefix='fuzz_ckpt_') as work:
            counts = fuzz(args.cases, args.seed, work, args.case_timeout,
                          args.memory_gb)
    return 1 if any(counts[k] for k in BAD) else 0


if __name__ == '__main__':
    sys.exit(main())
