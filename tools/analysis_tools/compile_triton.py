"""Compile the selective-scan Triton kernels ahead of time for GPU targets.

    python tools/analysis_tools/compile_triton.py [--arch 80 90 ...]
        [--out DIR] [--variants T2 B1 ...] [--quick] [--jobs N]
        [--no-search]

No GPU or driver is needed: triton lowers each kernel to PTX and runs the
ptxas that ships in its wheel to get a cubin for every ``--arch``.

What is compiled is what MobileMamba's launches would compile: each SS2D
scan of every variant (its stages' (d_inner, L) from
:func:`mmmobilemamba.analysis.scan_benchmark.ss2d_shapes`) crossed with
fp32 / fp16 / bf16 inputs (fp16/bf16 as under AMP: A, D and delta_bias stay
fp32), softplus on / off, delta_bias on / off and N = 1 and 16, both
directions. :func:`mmmobilemamba.ops.scan.triton_scan.launch_config` turns
each problem into its forward and backward launches (block sizes and warps
from :data:`mmmobilemamba.ops.scan.TRITON_CONFIGS`), and triton's JIT
specialiser turns each launch into the key it would compile on a GPU;
launches with the same key are compiled once.

One row per kernel x specialisation x target: registers, spill stores and
loads, stack frame (ptxas's report), shared memory and the problems that
use it, flagged ``SPILL`` when ptxas spills and ``SMEM`` when a block needs
more shared memory than the target allows. For every spilling row the
tool then compiles smaller tiles and more warps (unless ``--no-search``)
and prints the reason it spills: either a configuration that does not (to
put into ``TRITON_CONFIGS``) or that every candidate spills. The exit
status is 1 if a compile fails (flags alone do not fail the run).
``--out DIR`` writes ``table.md``, ``rows.json`` and each row's PTX and
cubin. ``TRITON_INTERPRET`` must not be set: the interpreter has no
compiler.
"""
import argparse
import contextlib
import dataclasses
import io
import json
import os
import os.path as osp
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from mmmobilemamba.analysis.scan_benchmark import VARIANTS, ss2d_shapes
from mmmobilemamba.ops.scan.triton_scan import (KernelLaunch, ScanProblem,
                                                launch_config)

#: Largest shared memory one block may use (opt-in), in bytes, by compute
#: capability; an arch missing here is checked against the nearest lower.
MAX_SMEM = {70: 98304, 75: 65536, 80: 166912, 86: 101376, 87: 166912,
            89: 101376, 90: 232448, 100: 232448, 103: 232448, 120: 101376}
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16,
          'bf16': torch.bfloat16}
#: What --quick compiles: (stage, dtype, softplus, delta_bias, N) on B1,
#: two opposite corners.
QUICK = ((1, 'bf16', True, True, 1), (1, 'fp32', False, False, 16))


def problems(variants: Sequence[str], quick: bool = False
             ) -> List[Tuple[str, ScanProblem]]:
    """(label, problem) of every scan call to compile for."""
    out = []
    for variant in variants:
        size = VARIANTS[variant][0]
        for stage, (dim, length) in enumerate(ss2d_shapes(variant), 1):
            combos = [(stage, dt, sp, bias, n) for dt in DTYPES
                      for sp in (True, False) for bias in (True, False)
                      for n in (1, 16)]
            for _, dt, softplus, bias, n_state in (
                    [c for c in QUICK if c[0] == stage] if quick else
                    combos):
                low = DTYPES[dt]
                dtypes = dict(u=low, delta=low, A=torch.float32, B=low,
                              C=low, gy=low)
                if bias:
                    dtypes['delta_bias'] = torch.float32
                label = (f'{variant}@{size} s{stage} {dt} '
                         f'sp={int(softplus)} bias={int(bias)} N={n_state}')
                out.append((label, ScanProblem(
                    1, dim, length, n_state, 1, 2, softplus, True, False,
                    dtypes)))
    return out


def _jit_key(launch: KernelLaunch, target):
    """What triton's JIT would compile for this launch on ``target``:
    (options, signature, constexprs, attrs)."""
    from triton import knobs
    from triton.compiler import make_backend
    from triton.runtime.jit import MockTensor, create_function_from_signature

    from mmmobilemamba.ops.scan import triton_kernels
    fn = getattr(triton_kernels, launch.kernel)
    backend = make_backend(target)
    args = [MockTensor(dt) for dt in launch.pointers.values()]
    args += list(launch.ints.values())
    kwargs = dict(launch.constexprs, num_warps=launch.num_warps,
                  debug=bool(fn.debug or knobs.runtime.debug),
                  instrumentation_mode=knobs.compilation.instrumentation_mode)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    return fn._pack_args(backend, kwargs, bound, specialization, options)


def describe(launch: KernelLaunch) -> str:
    """Short text of a specialisation: direction, input dtypes, flags,
    blocks and warps."""
    c, p = launch.constexprs, launch.pointers
    dtypes = '/'.join(sorted({str(p[n]).replace('torch.', '')
                              for n in ('u', 'delta', 'B', 'C')}))
    flags = [k.lower() for k, v in c.items()
             if isinstance(v, bool) and v and k != 'REVERSE']
    return (f'{"reversed" if c["REVERSE"] else "raster"} {dtypes} '
            f'BD={c["BD"]} NP={c["NP"]} BL={c["BL"]} w={launch.num_warps} '
            f'{",".join(flags)}')


_PTXAS = re.compile(r'(\d+) bytes stack frame, (\d+) bytes spill stores, '
                    r'(\d+) bytes spill loads.*?Used (\d+) registers', re.S)


def compile_one(job):
    """Compile one specialisation for one arch (runs in a worker)."""
    launch, arch, out_dir, stem = job
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mmmobilemamba.ops.scan import triton_kernels
    target = GPUTarget('cuda', arch, 32)
    options, signature, constexprs, attrs = _jit_key(launch, target)
    fn = getattr(triton_kernels, launch.kernel)
    # The register report is ptxas's -v output, which triton prints only
    # when asked to; a cache hit would skip ptxas, so always compile.
    knobs.nvidia.dump_ptxas_log = True
    knobs.compilation.always_compile = True
    log = io.StringIO()
    row = dict(kernel=launch.kernel, arch=arch, spec=describe(launch))
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn, signature, constexprs,
                                                attrs), target=target,
                                      options=options.__dict__)
    except Exception as e:  # noqa: BLE001 (reported as a failed row)
        return dict(row, error=f'{type(e).__name__}: {str(e)[:2000]}')
    row['seconds'] = round(time.perf_counter() - start, 2)
    m = _PTXAS.search(log.getvalue())
    if m is None:
        return dict(row, error='no ptxas register report in the log')
    stack, spill_st, spill_ld, regs = map(int, m.groups())
    smem = compiled.metadata.shared
    limit = MAX_SMEM.get(max([a for a in MAX_SMEM if a <= arch] or [0]))
    flags = (['SPILL'] if spill_st or spill_ld else []) + (
        ['SMEM'] if limit is not None and smem > limit else [])
    row.update(regs=regs, spill_stores=spill_st, spill_loads=spill_ld,
               stack=stack, smem=smem, smem_limit=limit, flags=flags)
    if out_dir:
        for ext in ('ptx', 'cubin'):
            with open(osp.join(out_dir, f'{stem}.{ext}'),
                      'wb' if ext == 'cubin' else 'w') as f:
                f.write(compiled.asm[ext])
    return row


def collect(variants: Sequence[str], quick: bool, archs: Sequence[int]):
    """Unique (launch, arch) jobs, each with the labels of the problems
    that use it. A specialisation is a kernel with its constexprs, warps
    and pointer dtypes, compiled with the integers of its first problem."""
    jobs: Dict[tuple, Tuple[KernelLaunch, int, List[str]]] = {}
    probs = problems(variants, quick)
    for arch in archs:
        for label, problem in probs:
            for backward in (False, True):
                for launch in launch_config(problem, backward):
                    key = (launch.kernel, arch, launch.num_warps,
                           tuple(launch.constexprs.items()),
                           tuple(map(str, launch.pointers.values())))
                    entry = jobs.setdefault(key, (launch, arch, []))
                    if label not in entry[2]:
                        entry[2].append(label)
    return list(jobs.values()), len(probs)


def candidates(launch: KernelLaunch) -> List[KernelLaunch]:
    """Smaller tiles and more warps than ``launch`` (BL down to 16, BD
    down to 1, 4 or 8 warps), the largest tiles first."""
    c = launch.constexprs
    out = []
    bd = c['BD']
    while bd >= 1:
        bl = c['BL'] if bd == c['BD'] else min(c['BL'] * c['BD'] // bd, 128)
        while bl >= 16:
            for warps in (4, 8):
                if (bd, bl, warps) != (c['BD'], c['BL'], launch.num_warps):
                    out.append(dataclasses.replace(
                        launch, num_warps=warps,
                        constexprs=dict(c, BD=bd, BL=bl)))
            bl //= 2
        bd //= 2
    return out


def search(row: dict, launch: KernelLaunch, arch: int, jobs: int) -> str:
    """Why ``row`` spills: the first candidate that does not, or that
    none does."""
    tried = candidates(launch)
    work = [(c, arch, None, '') for c in tried]
    with ProcessPoolExecutor(jobs) as pool:
        for cand, got in zip(tried, pool.map(compile_one, work)):
            if 'error' not in got and not got['flags']:
                return (f'does not spill with BD={cand.constexprs["BD"]} '
                        f'BL={cand.constexprs["BL"]} w={cand.num_warps} '
                        f'({got["regs"]} registers): use that configuration')
    return (f'every one of {len(tried)} smaller tiles / more warps spills '
            f'too (BD x NP x BL down to 1 x {launch.constexprs["NP"]} x 16,'
            ' 4 and 8 warps): NP x BL states per channel do not fit in the '
            '255 registers a thread may hold')


def format_table(rows: List[dict]) -> str:
    lines = ['| kernel | specialisation | sm | regs | spill st/ld (B) | '
             'stack (B) | smem (B) | flags | used by |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f'| {r["kernel"]} | {r["spec"]} | {r["arch"]} | '
                         f'FAILED: {r["error"].splitlines()[0][:120]} '
                         '| | | | | |')
        else:
            lines.append(
                f'| {r["kernel"]} | {r["spec"]} | {r["arch"]} | {r["regs"]}'
                f' | {r["spill_stores"]}/{r["spill_loads"]} | {r["stack"]} '
                f'| {r["smem"]} | {" ".join(r["flags"])} | {r["used_by"]} |')
    return '\n'.join(lines)


def _users(labels: List[str]) -> str:
    """'B1@256 s1 x6, ...': how many problems of each stage use a row."""
    count: Dict[str, int] = {}
    for label in labels:
        stage = ' '.join(label.split()[:2])
        count[stage] = count.get(stage, 0) + 1
    return ', '.join(f'{k} x{v}' for k, v in count.items())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', type=int, nargs='+', default=[80, 90],
                        help='compute capabilities (80: A100, 90: H100)')
    parser.add_argument('--out', default=None,
                        help='write table.md, rows.json, PTX and cubins')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument('--quick', action='store_true',
                        help="two problems on B1's first stage (the test)")
    parser.add_argument('--no-search', action='store_true',
                        help='do not look for configurations that spill '
                        'less')
    parser.add_argument('--jobs', type=int,
                        default=min(4, os.cpu_count() or 1),
                        help='compile processes')
    args = parser.parse_args(argv)
    if os.environ.get('TRITON_INTERPRET') == '1':
        print('error: TRITON_INTERPRET=1 is set; the interpreter cannot '
              'compile for GPUs. Unset it.', file=sys.stderr)
        return 2
    try:
        import triton
    except ImportError as e:
        print(f'error: triton is not installed ({e})', file=sys.stderr)
        return 2
    start = time.perf_counter()
    variants = ['B1'] if args.quick else args.variants
    jobs, n_problems = collect(variants, args.quick, args.arch)
    print(f'triton {triton.__version__}; {n_problems} scan problems of '
          f'{", ".join(variants)} -> {len(jobs)} kernel x specialisation x '
          f'target compiles for sm_{", sm_".join(map(str, args.arch))}',
          flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    work = [(launch, arch, args.out, f'{i:04d}_{launch.kernel}_sm{arch}')
            for i, (launch, arch, _) in enumerate(jobs)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(compile_one, work))
    for row, (launch, _, labels) in zip(rows, jobs):
        row['used_by'], row['problems'] = _users(labels), labels
    order = sorted(range(len(rows)), key=lambda i: (
        rows[i]['kernel'], rows[i]['arch'], rows[i]['spec']))
    rows, jobs = [rows[i] for i in order], [jobs[i] for i in order]
    table = format_table(rows)
    print(table)
    failed = [r for r in rows if 'error' in r]
    spills = [(r, j) for r, j in zip(rows, jobs)
              if 'SPILL' in r.get('flags', ())]
    smem = [r for r in rows if 'SMEM' in r.get('flags', ())]
    summary = (f'{len(rows)} rows: {len(failed)} failed, {len(spills)} '
               f'spill registers, {len(smem)} over the shared-memory limit')
    print(summary, flush=True)
    for row, (launch, arch, _) in spills:
        row['reason'] = ('not searched (--no-search)' if args.no_search
                         else search(row, launch, arch, args.jobs))
        print(f'SPILL {row["kernel"]} sm_{arch} {row["spec"]}: '
              f'{row["spill_stores"]} B stores / {row["spill_loads"]} B '
              f'loads, used by {row["used_by"]}; {row["reason"]}',
              flush=True)
    print(f'{time.perf_counter() - start:.0f} s with {args.jobs} processes')
    for r in failed:
        print(f'\nFAILED {r["kernel"]} sm_{r["arch"]} {r["spec"]}:\n'
              f'{r["error"]}', file=sys.stderr)
    if args.out:
        with open(osp.join(args.out, 'table.md'), 'w') as f:
            f.write(table + '\n\n' + summary + '\n')
        with open(osp.join(args.out, 'rows.json'), 'w') as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
