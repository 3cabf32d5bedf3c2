"""The ``'triton'`` backend: autograd Functions around the Triton kernels.

This module imports nothing from triton at import time: the kernels
(:mod:`.triton_kernels`) are imported on the first call, so a missing
triton makes the backend unavailable (with a reason) instead of breaking
``import mmmobilemamba.ops``. Triton runs on CUDA tensors; with
``TRITON_INTERPRET=1`` set in the environment before triton is first
imported, triton's interpreter runs the same kernels on CPU tensors (that is
how the tests exercise them without a GPU). This library only reads that
variable, it never sets it.

Inputs may be fp32, fp16 or bf16 (fp64 is computed in fp32); the kernels
accumulate in fp32, y is returned in u's dtype and each gradient in its
input's dtype.
"""
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch

_KERNELS = None


def triton_status(device: torch.device) -> Union[bool, str]:
    """True if the triton backend can run on ``device``, else the reason."""
    if importlib.util.find_spec('triton') is None:
        return 'triton is not installed (pip install triton)'
    if device.type == 'cuda':
        return True
    if os.environ.get('TRITON_INTERPRET') == '1':
        return True  # triton's CPU interpreter
    return (f'triton kernels need CUDA tensors (got {device.type}); set '
            'TRITON_INTERPRET=1 before importing triton to run them in '
            "triton's CPU interpreter")


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        try:
            from . import triton_kernels
        except ImportError as e:  # triton present but broken
            raise RuntimeError(f'selective-scan backend \'triton\' cannot '
                               f'import triton: {e}') from e
        _KERNELS = triton_kernels
    return _KERNELS


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _blocks(dim: int, group_dim: int, n_state: int,
            length: int) -> Tuple[int, int, int]:
    """Channel block (a power of two dividing the group size, so a block
    never spans two groups), padded state size and tile length."""
    n_pad = _pow2(n_state)
    block_d = min(group_dim & -group_dim, 32, max(1, 256 // n_pad),
                  _pow2(dim))
    block_l = min(max(16, 4096 // (block_d * n_pad)), 128)
    block_l = max(16, min(block_l, _pow2(length)))
    return block_d, n_pad, block_l


def _geometry(dim: int, groups: int, n_state: int,
              length: int) -> Tuple[int, int, int, int, int]:
    """Block sizes (BD, NP, BL), tiles per sequence and channel blocks."""
    bd, np_, bl = _blocks(dim, dim // groups, n_state, length)
    return bd, np_, bl, -(-length // bl), -(-dim // bd)


#: Integer arguments of each kernel, in the kernels' order.
_FWD_INTS = ('dim', 'length', 'n_state', 'group_dim', 'n_tiles', 'k_dirs',
             'k')
_BWD_INTS = ('dim', 'length', 'n_state', 'group_dim', 'n_tiles', 'k_dirs',
             'n_dblk', 'k')
#: Pointer arguments of each kernel, in the kernels' order.
FWD_POINTERS = ('u_ptr', 'delta_ptr', 'A_ptr', 'B_ptr', 'C_ptr', 'D_ptr',
                'bias_ptr', 'z_ptr', 'y_ptr', 'ck_ptr', 'last_ptr')
BWD_POINTERS = ('u_ptr', 'delta_ptr', 'A_ptr', 'B_ptr', 'C_ptr', 'D_ptr',
                'bias_ptr', 'z_ptr', 'gy_ptr', 'ck_ptr', 'glast_ptr',
                'gu_ptr', 'gdelta_ptr', 'gA_ptr', 'gB_ptr', 'gC_ptr',
                'gD_ptr', 'gbias_ptr', 'gz_ptr')


@dataclass
class ScanProblem:
    """What decides the kernels' specialisations: shapes, which optional
    inputs are given and the dtype of every tensor the kernels read.

    ``dtypes`` maps 'u', 'delta', 'A', 'B', 'C' and, when given, 'z' and
    'delta_bias' to the dtype the kernel reads (fp64 is read as fp32). For
    the backward pass, 'gy' and 'g_last' are the incoming gradients' dtypes
    (absent: no gradient flows in).
    """
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

    @property
    def has_bias(self) -> bool:
        return 'delta_bias' in self.dtypes

    @property
    def has_z(self) -> bool:
        return 'z' in self.dtypes


@dataclass
class KernelLaunch:
    """One kernel launch: which kernel, its grid, integer arguments,
    constexprs and the dtype of each pointer argument."""
    kernel: str
    grid: Tuple[int, int]
    ints: Dict[str, int]
    constexprs: Dict[str, Union[bool, int]]
    pointers: Dict[str, torch.dtype]


def launch_config(problem: ScanProblem,
                  backward: bool = False) -> List[KernelLaunch]:
    """The launches of a forward (or backward) pass, in launch order.

    The launch code takes every constexpr, block size and integer argument
    from here, and ``tools/analysis_tools/compile_triton.py`` compiles what
    this returns, so the two cannot drift apart.
    """
    p = problem
    f32 = torch.float32
    dt = {k: (f32 if v == torch.float64 else v) for k, v in p.dtypes.items()}
    bd, np_, bl, n_tiles, n_dblk = _geometry(p.dim, p.groups, p.n_state,
                                              p.length)
    ints = dict(dim=p.dim, length=p.length, n_state=p.n_state,
                group_dim=p.dim // p.groups, n_tiles=n_tiles,
                k_dirs=p.k_dirs, n_dblk=n_dblk)
    # Absent inputs are replaced by an fp32 scratch buffer (never read).
    ptrs = dict(u_ptr=dt['u'], delta_ptr=dt['delta'], A_ptr=dt['A'],
                B_ptr=dt['B'], C_ptr=dt['C'], D_ptr=f32,
                bias_ptr=dt.get('delta_bias', f32), z_ptr=dt.get('z', f32))
    launches = []
    # The backwards direction (if any) runs first and writes y (or du) with
    # the D skip; the forward direction adds to it and applies the gate.
    for n, kd in enumerate(range(p.k_dirs - 1, -1, -1)):
        first, final = n == 0, kd == 0
        cx = dict(REVERSE=kd == 1, SOFTPLUS=p.softplus,
                  HAS_D=first and p.has_D, HAS_BIAS=p.has_bias,
                  HAS_Z=final and p.has_z)
        if backward:
            cx.update(ACCUM_GU=not first,
                      HAS_GLAST=final and 'g_last' in dt)
            names, int_names = BWD_POINTERS, _BWD_INTS
            extra = dict(gy_ptr=dt.get('gy', f32),
                         glast_ptr=dt.get('g_last', f32))
        else:
            cx.update(ACCUM_Y=not first,
                      STORE_LAST=final and p.return_last_state)
            names, int_names = FWD_POINTERS, _FWD_INTS
            extra = {}
        cx.update(BD=bd, NP=np_, BL=bl)
        launches.append(KernelLaunch(
            'scan_bwd_kernel' if backward else 'scan_fwd_kernel',
            (p.batch, n_dblk), {k: dict(ints, k=kd)[k] for k in int_names},
            cx, {k: {**ptrs, **extra}.get(k, f32) for k in names}))
    return launches


class _Launch:
    """Contiguous fp32-or-lower views and launch geometry of one call."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, k_dirs):
        self.u = u.contiguous()
        self.delta = delta.contiguous()
        self.A = A.contiguous()
        self.B, self.C = B.contiguous(), C.contiguous()
        self.z = None if z is None else z.contiguous()
        self.bias = None if delta_bias is None else delta_bias.contiguous()
        self.batch, self.dim, self.length = u.shape
        self.k_dirs = k_dirs
        self.n_state = A.shape[-1]
        groups = B.numel() // (self.batch * k_dirs * self.n_state *
                               max(self.length, 1)) if self.length else 1
        self.groups = groups
        self.group_dim = self.dim // groups
        self.D = (None if D is None else
                  D.float().view(k_dirs, self.dim).sum(0).contiguous())
        (self.bd, self.np_, self.bl, self.n_tiles,
         self.n_dblk) = _geometry(self.dim, groups, self.n_state, self.length)
        self.grid = (self.batch, self.n_dblk)

    def problem(self, softplus: bool, return_last_state: bool = False,
                gy=None, g_last=None) -> ScanProblem:
        dtypes = dict(u=self.u.dtype, delta=self.delta.dtype, A=self.A.dtype,
                      B=self.B.dtype, C=self.C.dtype)
        for name, t in (('z', self.z), ('delta_bias', self.bias),
                        ('gy', gy), ('g_last', g_last)):
            if t is not None:
                dtypes[name] = t.dtype
        return ScanProblem(self.batch, self.dim, self.length, self.n_state,
                           self.groups, self.k_dirs, softplus,
                           self.D is not None, return_last_state, dtypes)

    def scratch(self, *shape):
        return torch.empty(*shape, dtype=torch.float32, device=self.u.device)


def _launch(kernels, cfg: KernelLaunch, tensors: Dict[str, torch.Tensor]):
    getattr(kernels, cfg.kernel)[cfg.grid](
        *(tensors[name] for name in cfg.pointers), *cfg.ints.values(),
        **cfg.constexprs)


def _forward(p: _Launch, softplus: bool, return_last_state: bool):
    k = _kernels()
    y = p.scratch(p.batch, p.dim, p.length)
    ck = p.scratch(p.batch, p.k_dirs, p.dim, p.n_state, p.n_tiles)
    last = p.scratch(p.batch, p.dim, p.n_state) if return_last_state else y
    tensors = dict(u_ptr=p.u, delta_ptr=p.delta, A_ptr=p.A, B_ptr=p.B,
                   C_ptr=p.C, D_ptr=p.D if p.D is not None else y,
                   bias_ptr=p.bias if p.bias is not None else y,
                   z_ptr=p.z if p.z is not None else y, y_ptr=y, ck_ptr=ck,
                   last_ptr=last)
    for cfg in launch_config(p.problem(softplus, return_last_state)):
        _launch(k, cfg, tensors)
    return y, ck, (last if return_last_state else None)


def _backward(p: _Launch, softplus: bool, ck, gy, g_last):
    k = _kernels()
    problem = p.problem(softplus, gy=gy, g_last=g_last)
    gy = (torch.zeros_like(p.u, dtype=torch.float32) if gy is None else
          gy.contiguous())
    gu = p.scratch(p.batch, p.dim, p.length)
    gdelta = p.scratch(p.batch, p.k_dirs, p.dim, p.length)
    gA = p.scratch(p.batch, p.k_dirs, p.dim, p.n_state)
    gB = p.scratch(p.batch, p.k_dirs, p.n_dblk, p.n_state, p.length)
    gC = p.scratch(p.batch, p.k_dirs, p.n_dblk, p.n_state, p.length)
    gD = p.scratch(p.batch, p.dim)
    gbias = p.scratch(p.batch, p.k_dirs, p.dim)
    gz = p.scratch(p.batch, p.dim, p.length) if p.z is not None else gu
    glast = g_last.contiguous() if g_last is not None else gu
    tensors = dict(u_ptr=p.u, delta_ptr=p.delta, A_ptr=p.A, B_ptr=p.B,
                   C_ptr=p.C, D_ptr=p.D if p.D is not None else gu,
                   bias_ptr=p.bias if p.bias is not None else gu,
                   z_ptr=p.z if p.z is not None else gu, gy_ptr=gy,
                   ck_ptr=ck, glast_ptr=glast, gu_ptr=gu, gdelta_ptr=gdelta,
                   gA_ptr=gA, gB_ptr=gB, gC_ptr=gC, gD_ptr=gD,
                   gbias_ptr=gbias, gz_ptr=gz)
    for cfg in launch_config(problem, backward=True):
        _launch(k, cfg, tensors)
    per_group = p.group_dim // p.bd  # channel blocks never span two groups
    sum_blocks = lambda t: t.view(  # noqa: E731
        p.batch, p.k_dirs, p.groups, per_group, p.n_state,
        p.length).sum(3)
    return (gu, gdelta, gA.sum(0), sum_blocks(gB), sum_blocks(gC),
            gD.sum(0).repeat(p.k_dirs) if p.D is not None else None,
            gz if p.z is not None else None,
            gbias.sum(0).flatten() if p.bias is not None else None)


def _cast(grad: Optional[torch.Tensor], like: Optional[torch.Tensor]):
    if grad is None or like is None:
        return None
    return grad.reshape(like.shape).to(like.dtype)


def _as_kernel_input(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """fp64 is not a kernel dtype: compute it in fp32."""
    if t is not None and t.dtype == torch.float64:
        return t.float()
    return t


def triton_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
                   return_last_state: bool):
    """The ``'triton'`` implementation of the scan operator (its layout:
    delta (b, K, d, L), A (K, d, N), B/C (b, K, G, N, L), D/bias (K, d))."""
    ins = [_as_kernel_input(t) for t in (u, delta, A, B, C, D, z, delta_bias)]
    if ins[5] is not None:
        ins[5] = ins[5].reshape(-1)
    p = _Launch(*ins, k_dirs=delta.shape[1])
    y, _, last = _forward(p, delta_softplus, return_last_state)
    return y.to(u.dtype), (None if last is None else last.to(u.dtype))


def triton_backward(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
                    delta_softplus: bool):
    """Gradients of :func:`triton_forward`'s inputs; the forward kernel is
    run again for its tile checkpoints."""
    ins = [_as_kernel_input(t) for t in (u, delta, A, B, C, D, z, delta_bias)]
    if ins[5] is not None:
        ins[5] = ins[5].reshape(-1)
    p = _Launch(*ins, k_dirs=delta.shape[1])
    _, ck, _ = _forward(p, delta_softplus, False)
    grads = _backward(p, delta_softplus, ck, _as_kernel_input(gy),
                      _as_kernel_input(g_last))
    return tuple(_cast(g, t) for g, t in zip(
        grads, (u, delta, A, B, C, D, z, delta_bias)))
