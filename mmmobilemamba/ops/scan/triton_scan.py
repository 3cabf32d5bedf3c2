"""The ``'triton'`` row: launches of the Triton kernels
(:mod:`.triton_kernels`).

Nothing here imports triton until the first call, so a missing triton makes
the row unavailable (with the reason) instead of breaking the import. With
``TRITON_INTERPRET=1`` set before triton is imported, triton's interpreter
runs the same kernels on CPU tensors (how the tests check them); this
library only reads that variable. fp64 inputs are computed in fp32; the
kernels accumulate in fp32, y comes back in u's dtype and each gradient in
its input's dtype. Block sizes and warps come from
:data:`~.backends.TRITON_CONFIGS`, through :func:`launch_config`, which
``tools/analysis_tools/compile_triton.py`` compiles too.
"""
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Union

import torch

_KERNELS = None
F32 = torch.float32
#: Integer and pointer arguments of each kernel, in the kernels' order.
INTS = {'scan_fwd_kernel': ('dim', 'length', 'n_state', 'group_dim',
                            'n_tiles', 'k_dirs', 'k'),
        'scan_bwd_kernel': ('dim', 'length', 'n_state', 'group_dim',
                            'n_tiles', 'k_dirs', 'n_dblk', 'k')}
POINTERS = {
    'scan_fwd_kernel': ('u', 'delta', 'A', 'B', 'C', 'D', 'bias', 'z', 'y',
                        'ck', 'last'),
    'scan_bwd_kernel': ('u', 'delta', 'A', 'B', 'C', 'D', 'bias', 'z', 'gy',
                        'ck', 'glast', 'gu', 'gdelta', 'gA', 'gB', 'gC', 'gD',
                        'gbias', 'gz')}


def status(device: torch.device) -> Union[bool, str]:
    """True if the Triton kernels can run on ``device``, else why not."""
    if importlib.util.find_spec('triton') is None:
        return 'triton is not installed (pip install triton)'
    if device.type == 'cuda' or os.environ.get('TRITON_INTERPRET') == '1':
        return True  # a GPU, or triton's CPU interpreter
    return (f'triton kernels need CUDA tensors (got {device.type}); set '
            'TRITON_INTERPRET=1 before importing triton to run them in '
            "triton's CPU interpreter")


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        try:
            from . import triton_kernels
        except ImportError as e:  # triton present but broken
            raise RuntimeError(f"selective-scan backend 'triton' cannot "
                               f'import triton: {e}') from e
        _KERNELS = triton_kernels
    return _KERNELS


@dataclass
class ScanProblem:
    """What the kernels specialise on: shapes, optional inputs, and the
    dtype each tensor is read in ('u', 'delta', 'A', 'B', 'C' and, when
    present, 'z', 'delta_bias'; for the backward 'gy' and 'g_last')."""
    batch: int
    dim: int
    length: int
    n_state: int
    groups: int = 1
    k_dirs: int = 1
    softplus: bool = True
    has_D: bool = True
    return_last_state: bool = False
    dtypes: Dict[str, torch.dtype] = field(default_factory=dict)


@dataclass
class KernelLaunch:
    """One launch: kernel, grid, integers, constexprs, warps, and the dtype
    of each pointer argument."""
    kernel: str
    grid: Tuple[int, int]
    ints: Dict[str, int]
    constexprs: Dict[str, Union[bool, int]]
    num_warps: int
    pointers: Dict[str, torch.dtype]


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def launch_config(p: ScanProblem, backward: bool = False
                  ) -> List[KernelLaunch]:
    """The launches of a forward (or backward) pass, in launch order.

    The backwards direction (if any) runs first and writes y (or du) with
    the D skip; the forward direction adds to it and applies the gate.
    """
    from .backends import TRITON_CONFIGS
    dt = {k: F32 if v == torch.float64 else v for k, v in p.dtypes.items()}
    cfg = TRITON_CONFIGS[('backward' if backward else 'forward',
                          'fp32' if dt['u'] == F32 else 'half')]
    np_ = _pow2(p.n_state)
    group_dim = p.dim // p.groups
    # a power of two dividing the group size: a block never spans two groups
    bd = min(group_dim & -group_dim, cfg.block_d,
             max(1, cfg.tile // (16 * np_)), _pow2(p.dim))
    bl = max(16, min(cfg.tile // (bd * np_), cfg.max_steps,
                     _pow2(p.length)))
    n_tiles, n_dblk = -(-p.length // bl), -(-p.dim // bd)
    ints = dict(dim=p.dim, length=p.length, n_state=p.n_state,
                group_dim=group_dim, n_tiles=n_tiles, k_dirs=p.k_dirs,
                n_dblk=n_dblk)
    # Absent inputs are replaced by an fp32 scratch buffer (never read).
    ptrs = dict(u=dt['u'], delta=dt['delta'], A=dt['A'], B=dt['B'],
                C=dt['C'], bias=dt.get('delta_bias', F32),
                z=dt.get('z', F32), gy=dt.get('gy', F32),
                glast=dt.get('g_last', F32))
    kernel = 'scan_bwd_kernel' if backward else 'scan_fwd_kernel'
    launches = []
    for n, k in enumerate(range(p.k_dirs - 1, -1, -1)):
        first, final = n == 0, k == 0
        cx = dict(REVERSE=k % 2 == 1, SOFTPLUS=p.softplus,
                  HAS_D=first and p.has_D, HAS_BIAS='delta_bias' in dt,
                  HAS_Z=final and 'z' in dt)
        if backward:
            cx.update(ACCUM_GU=not first, HAS_GLAST=final and 'g_last' in dt)
        else:
            cx.update(ACCUM_Y=not first,
                      STORE_LAST=final and p.return_last_state)
        cx.update(BD=bd, NP=np_, BL=bl)
        launches.append(KernelLaunch(
            kernel, (p.batch, n_dblk),
            {name: dict(ints, k=k)[name] for name in INTS[kernel]}, cx,
            cfg.num_warps, {name: ptrs.get(name, F32)
                            for name in POINTERS[kernel]}))
    return launches


def _run(launches: List[KernelLaunch], tensors: Dict[str, torch.Tensor]):
    kernels = _kernels()
    for cfg in launches:
        getattr(kernels, cfg.kernel)[cfg.grid](
            *(tensors[name] for name in cfg.pointers), *cfg.ints.values(),
            **cfg.constexprs, num_warps=cfg.num_warps)


def _prepare(u, delta, A, B, C, D, z, delta_bias):
    """Contiguous kernel inputs, fp64 read as fp32, D summed over the
    directions (both read the same u)."""
    def ready(t):
        if t is None:
            return None
        return (t.float() if t.dtype == torch.float64 else t).contiguous()
    ins = dict(u=ready(u), delta=ready(delta), A=ready(A), B=ready(B),
               C=ready(C), z=ready(z), bias=ready(delta_bias))
    ins['D'] = None if D is None else D.float().sum(0).contiguous()
    return ins


def _problem(ins, softplus, return_last_state=False, gy=None, g_last=None):
    batch, k_dirs, groups, n_state, length = ins['B'].shape
    named = dict(u=ins['u'], delta=ins['delta'], A=ins['A'], B=ins['B'],
                 C=ins['C'], z=ins['z'], delta_bias=ins['bias'], gy=gy,
                 g_last=g_last)
    return ScanProblem(batch, ins['u'].shape[1], length, n_state, groups,
                       k_dirs, softplus, ins['D'] is not None,
                       return_last_state, {k: t.dtype for k, t in
                                           named.items() if t is not None})


def _forward(ins, softplus, return_last_state):
    """y, the tile checkpoints and the last state (or None), in fp32."""
    p = _problem(ins, softplus, return_last_state)
    launches = launch_config(p)
    n_tiles = launches[0].ints['n_tiles']
    scratch = lambda *s: torch.empty(*s, dtype=F32,  # noqa: E731
                                     device=ins['u'].device)
    y = scratch(p.batch, p.dim, p.length)
    ck = scratch(p.batch, p.k_dirs, p.dim, p.n_state, n_tiles)
    last = scratch(p.batch, p.dim, p.n_state) if return_last_state else y
    tensors = dict(ins, y=y, ck=ck, last=last)
    _run(launches, {k: y if v is None else v for k, v in tensors.items()})
    return y, ck, (last if return_last_state else None)


def forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
            return_last_state):
    """y in u's dtype, and direction 0's last state or None."""
    ins = _prepare(u, delta, A, B, C, D, z, delta_bias)
    y, _, last = _forward(ins, delta_softplus, return_last_state)
    return y.to(u.dtype), (None if last is None else last.to(u.dtype))


def backward(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
             delta_softplus):
    """Every input's gradient (None for absent inputs); the forward kernel
    runs again for its tile checkpoints. Sums the kernels leave as
    per-program partials (over samples and channel blocks) are added
    here, so no atomics are needed."""
    ins = _prepare(u, delta, A, B, C, D, z, delta_bias)
    _, ck, _ = _forward(ins, delta_softplus, False)
    as32 = lambda t: None if t is None else (  # noqa: E731
        t.float() if t.dtype == torch.float64 else t).contiguous()
    gy, g_last = as32(gy), as32(g_last)
    if gy is None:  # the kernels always read gy
        gy = torch.zeros(u.shape, dtype=F32, device=u.device)
    p = _problem(ins, delta_softplus, gy=gy, g_last=g_last)
    launches = launch_config(p, backward=True)
    n_dblk, bd = launches[0].ints['n_dblk'], launches[0].constexprs['BD']
    b, K, d, N, L = p.batch, p.k_dirs, p.dim, p.n_state, p.length
    scratch = lambda *s: torch.empty(*s, dtype=F32,  # noqa: E731
                                     device=u.device)
    out = dict(gu=scratch(b, d, L), gdelta=scratch(b, K, d, L),
               gA=scratch(b, K, d, N), gB=scratch(b, K, n_dblk, N, L),
               gC=scratch(b, K, n_dblk, N, L), gD=scratch(b, d),
               gbias=scratch(b, K, d),
               gz=None if z is None else scratch(b, d, L))
    tensors = dict(ins, ck=ck, gy=gy, glast=g_last, **out)
    _run(launches, {k: out['gu'] if v is None else v
                    for k, v in tensors.items()})
    blocks = lambda g: g.view(  # noqa: E731  (channel blocks per group)
        b, K, p.groups, d // p.groups // bd, N, L).sum(3)
    grads = (out['gu'], out['gdelta'], out['gA'].sum(0), blocks(out['gB']),
             blocks(out['gC']), out['gD'].sum(0).expand(K, d),
             out['gz'], out['gbias'].sum(0))
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    return tuple(None if t is None else g.reshape(t.shape).to(t.dtype)
                 for g, t in zip(grads, inputs))
