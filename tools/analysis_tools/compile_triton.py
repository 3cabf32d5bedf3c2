"""Compile the selective-scan Triton kernels ahead of time for GPU targets.

    python tools/analysis_tools/compile_triton.py [--arch 80 90 ...]
        [--out DIR] [--variants T2 B1 ...] [--quick] [--jobs N]

No GPU or driver is needed: triton lowers each kernel to PTX and runs the
ptxas that ships in its wheel to get a cubin for every ``--arch``.

What is compiled is what MobileMamba's launches would compile. Each SS2D
scan of every variant (its stages' (d_inner, L) found by running the
backbone at the variant's config resolution with the scan stubbed out) is
crossed with fp32 / fp16 / bf16 inputs (fp16/bf16 as under AMP: A, D and
delta_bias stay fp32), softplus on / off, delta_bias on / off and
N = d_state and 16. For each such problem
:func:`mmmobilemamba.ops.selective_scan.triton_scan.launch_config` gives
the forward and backward launches (both directions), and triton's own JIT
specialiser turns each launch into the key it would compile on a GPU
(signature dtypes, constexprs, integers equal to 1, 16-divisibility).
Launches with the same key are compiled once.

One row per kernel x specialisation x target: registers, spill stores and
loads and stack frame (ptxas's report for that cubin), shared memory
(``compiled.metadata.shared``) and the problems that use it. A row is
flagged ``SPILL`` when ptxas spills registers and ``SMEM`` when it needs
more shared memory than one block may have on that target. The exit status
is 1 if any compile fails (flags alone do not fail the run).

``--out DIR`` writes ``table.md``, ``rows.json`` and each row's PTX and
cubin. ``TRITON_INTERPRET`` must not be set: the interpreter has no
compiler.
"""
import argparse
import contextlib
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

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmmobilemamba.ops.selective_scan.triton_scan import (  # noqa: E402
    KernelLaunch, ScanProblem, launch_config)

#: Largest shared memory one block may use (opt-in), in bytes, by compute
#: capability; an arch missing here is checked against the nearest lower.
MAX_SMEM = {70: 98304, 75: 65536, 80: 166912, 86: 101376, 87: 166912,
            89: 101376, 90: 232448, 100: 232448, 103: 232448, 120: 101376}
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16,
          'bf16': torch.bfloat16}
#: Problems compiled by --quick (the CI test): (variant, stage, dtype,
#: softplus, delta_bias, N) on B1's first stage, two opposite corners.
QUICK = (('B1', 1, 'bf16', True, True, None), ('B1', 1, 'fp32', False,
                                                 False, 16))


def variant_resolution(variant: str) -> int:
    """The ImageNet resolution of a variant, read from its config."""
    from mmengine.config import Config
    path = osp.join(REPO, 'configs', 'mobilemamba',
                    f'mobilemamba-{variant.lower()}_8xb128_in1k.py')
    return int(Config.fromfile(path).img_size)


def ss2d_shapes(variant: str, size: int) -> List[Tuple[int, int, int]]:
    """(d_inner, L, d_state) of every distinct SS2D scan of the backbone at
    ``size`` x ``size``, in the order the forward reaches them."""
    from mmmobilemamba.models.backbones.mobilemamba import MobileMamba
    from mmmobilemamba.models.ss2d import SS2D
    seen: List[Tuple[int, int, int]] = []
    original = SS2D.scan

    def record(self, x):
        shape = (x.shape[1], x.shape[2] * x.shape[3], self.d_state)
        if shape not in seen:
            seen.append(shape)
        return x  # only the shapes matter

    SS2D.scan = record
    try:
        model = MobileMamba(variant, init_cfg=None).eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        SS2D.scan = original
    return seen


def problems(variants: Sequence[str], quick: bool = False
             ) -> List[Tuple[str, ScanProblem]]:
    """(label, problem) of every scan call to compile for."""
    out = []
    for variant in variants:
        size = variant_resolution(variant)
        for stage, (dim, length, d_state) in enumerate(
                ss2d_shapes(variant, size), 1):
            combos = [(dt, sp, bias, n) for dt in DTYPES
                      for sp in (True, False) for bias in (True, False)
                      for n in sorted({d_state, 16})]
            if quick:
                combos = [(dt, sp, bias, n or d_state)
                          for v, s, dt, sp, bias, n in QUICK
                          if v == variant and s == stage]
            for dt, softplus, bias, n_state in combos:
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
    (kernel, signature, constexprs, attrs, options)."""
    from triton import knobs
    from triton.compiler import make_backend
    from triton.runtime.jit import MockTensor, create_function_from_signature

    from mmmobilemamba.ops.selective_scan import triton_kernels
    fn = getattr(triton_kernels, launch.kernel)
    backend = make_backend(target)
    args = [MockTensor(dt) for dt in launch.pointers.values()]
    args += list(launch.ints.values())
    kwargs = dict(launch.constexprs, debug=bool(fn.debug or
                                                knobs.runtime.debug),
                  instrumentation_mode=knobs.compilation.instrumentation_mode)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    return fn._pack_args(backend, kwargs, bound, specialization, options)


def describe(launch: KernelLaunch, signature: Dict[str, str],
             constexprs: Dict) -> str:
    """Short text of a specialisation: direction, input dtypes, flags,
    blocks, and the integers the JIT turned into constants."""
    c = launch.constexprs
    names = list(signature)
    dtypes = '/'.join(sorted({signature[n][1:] for n in
                              ('u_ptr', 'delta_ptr', 'B_ptr', 'C_ptr')}))
    flags = [k.lower() for k, v in c.items()
             if isinstance(v, bool) and v and k != 'REVERSE']
    consts = [f'{names[i[0]]}=1' for i in constexprs
              if names[i[0]] in launch.ints]
    return (f'{"reversed" if c["REVERSE"] else "raster"} {dtypes} '
            f'BD={c["BD"]} NP={c["NP"]} BL={c["BL"]} '
            f'{",".join(flags)}{" " + ",".join(consts) if consts else ""}')


_PTXAS = re.compile(r'(\d+) bytes stack frame, (\d+) bytes spill stores, '
                    r'(\d+) bytes spill loads.*?Used (\d+) registers', re.S)


def compile_one(job):
    """Compile one specialisation for one arch (runs in a worker)."""
    launch, arch, out_dir, stem = job
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mmmobilemamba.ops.selective_scan import triton_kernels
    target = GPUTarget('cuda', arch, 32)
    options, signature, constexprs, attrs = _jit_key(launch, target)
    fn = getattr(triton_kernels, launch.kernel)
    # The register report is ptxas's -v output, which triton prints only
    # when asked to; a cache hit would skip ptxas, so always compile.
    knobs.nvidia.dump_ptxas_log = True
    knobs.compilation.always_compile = True
    log = io.StringIO()
    row = dict(kernel=launch.kernel, arch=arch,
               spec=describe(launch, signature, constexprs))
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn, signature, constexprs,
                                                attrs), target=target,
                                      options=options.__dict__)
    except Exception as e:  # noqa: BLE001 (reported as a failed row)
        row.update(error=f'{type(e).__name__}: {str(e)[:2000]}')
        return row
    row['seconds'] = round(time.perf_counter() - start, 2)
    m = _PTXAS.search(log.getvalue())
    if m is None:
        row.update(error='no ptxas register report in the compile log')
        return row
    stack, spill_st, spill_ld, regs = map(int, m.groups())
    meta = compiled.metadata
    limit = MAX_SMEM[max(a for a in MAX_SMEM if a <= arch)] if any(
        a <= arch for a in MAX_SMEM) else None
    row.update(regs=regs, spill_stores=spill_st, spill_loads=spill_ld,
               stack=stack, smem=meta.shared, smem_limit=limit,
               num_warps=meta.num_warps, num_stages=meta.num_stages)
    flags = []
    if spill_st or spill_ld:
        flags.append('SPILL')
    if limit is not None and meta.shared > limit:
        flags.append('SMEM')
    row['flags'] = flags
    if out_dir:
        for ext in ('ptx', 'cubin'):
            mode = 'wb' if ext == 'cubin' else 'w'
            with open(osp.join(out_dir, f'{stem}.{ext}'), mode) as f:
                f.write(compiled.asm[ext])
    return row


def collect(variants: Sequence[str], quick: bool, archs: Sequence[int],
            all_ints: bool = False):
    """Unique (launch, arch) jobs, each with the problems that use it.

    A specialisation is a kernel with its constexprs (block sizes
    included) and pointer dtypes; it is compiled with the integer
    arguments of the first problem that uses it. ``all_ints`` also tells
    apart what the JIT specialises on integer values (== 1, divisible by
    16), as a GPU would compile them: about 3.5 times as many compiles.
    """
    from triton.backends.compiler import GPUTarget
    jobs: Dict[tuple, Tuple[KernelLaunch, int, List[str]]] = {}
    probs = problems(variants, quick)
    for arch in archs:
        target = GPUTarget('cuda', arch, 32)
        for label, problem in probs:
            for backward in (False, True):
                for launch in launch_config(problem, backward):
                    key = (launch.kernel, arch,
                           tuple(launch.constexprs.items()),
                           tuple(map(str, launch.pointers.values())))
                    if all_ints:
                        _, _, cx, attrs = _jit_key(launch, target)
                        key += (tuple(sorted(cx.items())),
                                tuple(sorted((k, str(v)) for k, v in
                                             attrs.items())))
                    entry = jobs.setdefault(key, (launch, arch, []))
                    if label not in entry[2]:
                        entry[2].append(label)
    return list(jobs.values()), len(probs)


def _users(labels: List[str]) -> str:
    """'B1@256 s1 x6, ...': how many problems of each stage use a row."""
    count: Dict[str, int] = {}
    for label in labels:
        stage = ' '.join(label.split()[:2])
        count[stage] = count.get(stage, 0) + 1
    return ', '.join(f'{k} x{v}' for k, v in count.items())


def format_table(rows: List[dict]) -> str:
    lines = ['| kernel | specialisation | sm | regs | spill st/ld (B) | '
             'stack (B) | smem (B) | flags | used by |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f'| {r["kernel"]} | {r["spec"]} | {r["arch"]} | '
                         f'FAILED: {r["error"].splitlines()[0][:120]} '
                         '| | | | | |')
            continue
        lines.append(
            f'| {r["kernel"]} | {r["spec"]} | {r["arch"]} | {r["regs"]} | '
            f'{r["spill_stores"]}/{r["spill_loads"]} | {r["stack"]} | '
            f'{r["smem"]} | {" ".join(r["flags"])} | {r["used_by"]} |')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmmobilemamba.models.backbones.mobilemamba import arch_settings
    variants_all = [v.upper() for v in arch_settings]
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', type=int, nargs='+', default=[80, 90],
                        help='compute capabilities (80: A100, 90: H100)')
    parser.add_argument('--out', default=None,
                        help='write table.md, rows.json, PTX and cubins')
    parser.add_argument('--variants', nargs='+', default=variants_all,
                        choices=variants_all)
    parser.add_argument('--quick', action='store_true',
                        help="two problems on B1's first stage (the test)")
    parser.add_argument('--all-int-specialisations', action='store_true',
                        help='also one compile per integer specialisation '
                        'of the JIT (value 1, divisible by 16)')
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
    variants = (['B1'] if args.quick and args.variants == variants_all else
                args.variants)
    jobs, n_problems = collect(variants, args.quick, args.arch,
                               args.all_int_specialisations)
    print(f'triton {triton.__version__}; {n_problems} scan problems of '
          f'{", ".join(variants)} -> {len(jobs)} kernel x specialisation x '
          f'target compiles for sm_{", sm_".join(map(str, args.arch))}',
          flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    work = [(launch, arch, args.out, f'{i:04d}_{launch.kernel}_sm{arch}')
            for i, (launch, arch, _) in enumerate(jobs)]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(compile_one, work))
    else:
        rows = [compile_one(w) for w in work]
    for row, (_, _, labels) in zip(rows, jobs):
        row['used_by'] = _users(labels)
        row['problems'] = labels
    rows.sort(key=lambda r: (r['kernel'], r['arch'], r['spec']))
    table = format_table(rows)
    print(table)
    failed = [r for r in rows if 'error' in r]
    spills = [r for r in rows if 'SPILL' in r.get('flags', ())]
    smem = [r for r in rows if 'SMEM' in r.get('flags', ())]
    took = time.perf_counter() - start
    summary = (f'{len(rows)} rows: {len(failed)} failed, {len(spills)} '
               f'spill registers, {len(smem)} over the shared-memory limit; '
               f'{took:.0f} s with {args.jobs} processes')
    print(summary)
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
