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
from typing import Optional, Tuple, Union

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
        self.bd, self.np_, self.bl = _blocks(self.dim, self.group_dim,
                                             self.n_state, self.length)
        self.n_tiles = -(-self.length // self.bl)
        self.n_dblk = -(-self.dim // self.bd)
        self.grid = (self.batch, self.n_dblk)

    def scratch(self, *shape):
        return torch.empty(*shape, dtype=torch.float32, device=self.u.device)


def _forward(p: _Launch, softplus: bool, return_last_state: bool):
    k = _kernels()
    y = p.scratch(p.batch, p.dim, p.length)
    ck = p.scratch(p.batch, p.k_dirs, p.dim, p.n_state, p.n_tiles)
    last = p.scratch(p.batch, p.dim, p.n_state) if return_last_state else y
    # The backwards direction (if any) writes y with the D skip first; the
    # forward direction adds to it and applies the gate.
    for n, kd in enumerate(range(p.k_dirs - 1, -1, -1)):
        first, final = n == 0, kd == 0
        k.scan_fwd_kernel[p.grid](
            p.u, p.delta, p.A, p.B, p.C, p.D if p.D is not None else y,
            p.bias if p.bias is not None else y,
            p.z if p.z is not None else y, y, ck, last, p.dim, p.length,
            p.n_state, p.group_dim, p.n_tiles, p.k_dirs, kd,
            REVERSE=kd == 1, SOFTPLUS=softplus,
            HAS_D=first and p.D is not None, HAS_BIAS=p.bias is not None,
            HAS_Z=final and p.z is not None, ACCUM_Y=not first,
            STORE_LAST=final and return_last_state, BD=p.bd, NP=p.np_,
            BL=p.bl)
    return y, ck, (last if return_last_state else None)


def _backward(p: _Launch, softplus: bool, ck, gy, g_last):
    k = _kernels()
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
    for n, kd in enumerate(range(p.k_dirs - 1, -1, -1)):
        first, final = n == 0, kd == 0
        k.scan_bwd_kernel[p.grid](
            p.u, p.delta, p.A, p.B, p.C, p.D if p.D is not None else gu,
            p.bias if p.bias is not None else gu,
            p.z if p.z is not None else gu, gy, ck, glast, gu, gdelta, gA,
            gB, gC, gD, gbias, gz, p.dim, p.length, p.n_state, p.group_dim,
            p.n_tiles, p.k_dirs, p.n_dblk, kd, REVERSE=kd == 1,
            SOFTPLUS=softplus, HAS_D=first and p.D is not None,
            HAS_BIAS=p.bias is not None, HAS_Z=final and p.z is not None,
            ACCUM_GU=not first, HAS_GLAST=final and g_last is not None,
            BD=p.bd, NP=p.np_, BL=p.bl)
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
