"""The selective scan's interface, and the operator between it and the
kernels.

Follow a call: :func:`selective_scan` (mamba_ssm's positional signature)
and :func:`selective_scan_bidirectional` (SS2D's two directions) check
their arguments, bring them into the one layout every kernel takes, pick a
row of the backend table (:mod:`.backends`) and either

* call the row's ``forward`` as plain tensor code (``'ref'``,
  ``'portable'``), or
* run the custom operator ``torch.ops.mmmobilemamba.selective_scan``,
  whose forward and backward call the row's kernels (``'cpp'``,
  ``'triton'``, ``'torch'``): one node for ``torch.compile``,
  ``torch.export`` and the FLOP counter, gradients by the row's backward.
  In eager inference the forward kernel is called without the operator:
  its Python wrappers cost tens of microseconds, as much as a batch-1 scan.

The kernels' layout (K directions, direction k runs backwards in time when
k is odd; G groups of B and C; N states)::

    u (b, d, L); delta (b, K, d, L); A (K, d, N); B, C (b, K, G, N, L);
    D, delta_bias (K, d), optional; z (b, d, L), optional.

Kernels return y (b, d, L) and direction 0's last state (b, d, N), both in
u's dtype, and each gradient in its input's dtype.
"""
import warnings
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import backends

ScanResult = Union[Tensor, Tuple[Tensor, Tensor]]
#: row name -> the error after which its default calls run its fallback.
_FAILED: Dict[str, str] = {}
REPORT = ('Please report it to the mmmobilemamba issue tracker with this '
          'message, your GPU model, `pip show torch triton`, and the output '
          'of `python tools/analysis_tools/compile_triton.py --quick` (and '
          'of `tools/analysis_tools/check_gpu.py` if you can run it).')


class TritonFallbackWarning(RuntimeWarning):
    """A row's kernels failed; default calls continue on its fallback."""


def selective_scan(u: Tensor,
                   delta: Tensor,
                   A: Tensor,
                   B: Tensor,
                   C: Tensor,
                   D: Optional[Tensor] = None,
                   z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = False,
                   return_last_state: bool = False,
                   *,
                   backend: Optional[str] = None) -> ScanResult:
    """Selective scan (S6), per channel with ``h_0 = 0``::

        dt_t = softplus(delta_t + delta_bias) if delta_softplus else delta_t
        h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
        y_t  = C_t . h_t + D * u_t        (then y *= silu(z) if z is given)

    Args:
        u (Tensor): Input, (batch, dim, L).
        delta (Tensor): Time steps before bias and softplus, (batch, dim, L).
        A (Tensor): State matrix, (dim, N); every entry must be <= 0.
        B (Tensor): Input projection, (batch, N, L), or grouped
            (batch, G, N, L) with dim divisible by G (channel d reads group
            d // (dim // G)).
        C (Tensor): Output projection, shaped like B.
        D (Tensor, optional): Skip weight, (dim,). Defaults to None.
        z (Tensor, optional): Gate, (batch, dim, L). Defaults to None.
        delta_bias (Tensor, optional): (dim,). Defaults to None.
        delta_softplus (bool): Apply softplus to delta. Defaults to False.
        return_last_state (bool): Also return h_L, (batch, dim, N).
            Defaults to False.
        backend (str, optional): A row of :mod:`.backends`; None runs the
            default for u's device. Defaults to None.

    Returns:
        Tensor | tuple[Tensor, Tensor]: y (batch, dim, L) in u's dtype
        (fp16 and bf16 are accumulated in fp32), and h_L if asked for.
    """
    _check_input(u)
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f'A must be (dim={d}, N), got {tuple(A.shape)}')
    n = A.shape[1]
    groups = B.shape[1] if B.dim() == 4 else 1
    if groups == 0 or d % groups:
        raise ValueError(f'B has {groups} groups, which does not divide '
                         f'dim={d}')
    bc = (b, n, L) if B.dim() == 3 else (b, groups, n, L)
    for name, t, shape in (('delta', delta, u.shape), ('B', B, bc),
                           ('C', C, bc), ('D', D, (d, )), ('z', z, u.shape),
                           ('delta_bias', delta_bias, (d, ))):
        _expect(name, t, shape)
    _check_decay(A)
    options = tuple(name for name, used in (
        ('return_last_state', return_last_state), ('z', z is not None),
        ('grouped', groups > 1), ('n_state>1', n > 1)) if used)
    row = backends.resolve(backend, u.device, options)
    per_dir = lambda t: None if t is None else t.reshape(1, d)  # noqa: E731
    y, last = _scan(row, backend is None, u, delta.reshape(b, 1, d, L),
                    A.reshape(1, d, n), B.reshape(b, 1, groups, n, L),
                    C.reshape(b, 1, groups, n, L), per_dir(D), z,
                    per_dir(delta_bias), delta_softplus, return_last_state)
    return (y, last) if return_last_state else y


def selective_scan_bidirectional(u: Tensor,
                                 delta: Tensor,
                                 A: Tensor,
                                 B: Tensor,
                                 C: Tensor,
                                 D: Optional[Tensor] = None,
                                 delta_bias: Optional[Tensor] = None,
                                 delta_softplus: bool = True,
                                 *,
                                 backend: Optional[str] = None,
                                 check: bool = True) -> Tensor:
    """The two-direction scan of SS2D, every tensor in raster order.

    Direction 0 scans t = 0 .. L-1, direction 1 scans t = L-1 .. 0 with its
    own parameters; the result is their sum in raster order, i.e.
    ``y0 + reverse(y1)`` with y1 the scan of the reversed sequence.

    Args:
        u (Tensor): (batch, dim, L), shared by both directions.
        delta (Tensor): (batch, 2, dim, L).
        A (Tensor): (2 * dim, N), direction-major, entries <= 0.
        B (Tensor): (batch, 2, N, L).
        C (Tensor): (batch, 2, N, L).
        D (Tensor, optional): (2 * dim,). Defaults to None.
        delta_bias (Tensor, optional): (2 * dim,). Defaults to None.
        delta_softplus (bool): Defaults to True.
        backend (str, optional): As in :func:`selective_scan`.
            Defaults to None.
        check (bool): Check shapes and A <= 0. SS2D passes False: it builds
            the arguments itself (A = -exp(A_logs)), and at batch 1 the
            checks cost as much as the compiled scan. Defaults to True.

    Returns:
        Tensor: (batch, dim, L) in u's dtype.
    """
    if check:
        _check_input(u)
    b, d, L = u.shape
    n = A.shape[-1]
    if check:
        for name, t, shape in (
                ('A', A, (2 * d, n)), ('delta', delta, (b, 2, d, L)),
                ('B', B, (b, 2, n, L)), ('C', C, (b, 2, n, L)),
                ('D', D, (2 * d, )), ('delta_bias', delta_bias, (2 * d, ))):
            _expect(name, t, shape)
        _check_decay(A)
    row = backends.resolve(backend, u.device,
                           ('n_state>1', ) if n > 1 else ())
    per_dir = lambda t: None if t is None else t.reshape(2, d)  # noqa: E731
    y, _ = _scan(row, backend is None, u, delta, A.reshape(2, d, n),
                 B.reshape(b, 2, 1, n, L), C.reshape(b, 2, 1, n, L),
                 per_dir(D), None, per_dir(delta_bias), delta_softplus,
                 False)
    return y


def _check_input(u: Tensor) -> None:
    if u.dim() != 3 or u.shape[-1] < 1:
        raise ValueError(f'u must be (batch, dim, L) with L >= 1, got '
                         f'{tuple(u.shape)}')
    if not u.is_floating_point():
        raise TypeError(f'u must be a floating tensor, got {u.dtype}')


def _expect(name: str, t: Optional[Tensor], shape) -> None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f'{name} must be {tuple(shape)}, '
                         f'got {tuple(t.shape)}')


def _watched() -> bool:
    """True while a compiler, tracer, exporter or dispatch mode (the FLOP
    counter) watches: the scan must then run as the operator, and reading
    a tensor's value would bake it into the graph."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting()
            or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or _get_current_dispatch_mode() is not None)


def _check_decay(A: Tensor) -> None:
    if not _watched() and bool((A > 0).any()):
        raise ValueError('A must be <= 0 (decaying state); got a positive '
                         f'entry, max A = {A.max().item():.4g}')


def _scan(row, default: bool, u, delta, A, B, C, D, z, delta_bias,
          delta_softplus, return_last_state):
    """Run ``row`` on arguments in the kernels' layout: its plain forward,
    its forward kernel (eager inference) or the operator."""
    if row.backward is None:
        return row.forward(u, delta, A, B, C, D, z, delta_bias,
                           delta_softplus, return_last_state)
    fallback = row.fallback if default else ''
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad
        for t in (u, delta, A, B, C, D, z, delta_bias))
    if not wants_grad and not _watched():  # eager inference
        return _kernel(0, row.name, fallback, u, delta, A, B, C, D, z,
                       delta_bias, delta_softplus, return_last_state)
    y, last = selective_scan_op(u, delta, A, B, C, D, z, delta_bias,
                                delta_softplus, return_last_state, row.name,
                                fallback)
    return y, (last if return_last_state else None)


def _kernel(which: int, name: str, fallback: str, *args):
    """Kernel ``which`` (0: forward, 1: backward) of row ``name``; with a
    ``fallback``, a failure other than running out of memory (the fallback
    would not have the memory either) warns once and switches this and
    every later default call to the fallback's kernels."""
    if fallback and name in _FAILED:
        name = fallback
    row = backends.TABLE[name]
    try:
        return (row.forward, row.backward)[which](*args)
    except Exception as e:  # noqa: BLE001 (re-raised unless it falls back)
        if not fallback or name == fallback or isinstance(
                e, torch.OutOfMemoryError):
            raise
        _FAILED[name] = error = f'{type(e).__name__}: {e}'.strip()[:3000]
        where = ''
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            where = f' ({torch.cuda.get_device_name()}, sm_{major}{minor})'
        warnings.warn(
            f'selective scan: the {name!r} kernels failed on this device'
            f'{where}; this and every later scan that did not ask for '
            f'backend={name!r} runs on {fallback!r} instead: same results, '
            f'slower. {REPORT} Pass backend={name!r} to raise the error '
            f'instead, or backend={fallback!r} to skip it. Error:\n{error}',
            TritonFallbackWarning, stacklevel=2)
        return _kernel(which, fallback, '', *args)


def _in_layout_of(t: Tensor, out: Tensor) -> Tensor:
    """``out`` with the strides of ``torch.empty_like(t)``, which the fake
    implementations promise the compiler."""
    if out.stride() == t.stride() and not out.storage_offset():
        return out
    like = torch.empty_like(t)
    if out.stride() == like.stride() and not out.storage_offset():
        return out
    return like.copy_(out)


@torch.library.custom_op('mmmobilemamba::selective_scan', mutates_args=())
def selective_scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                      C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
                      delta_bias: Optional[Tensor], delta_softplus: bool,
                      return_last_state: bool, backend: str,
                      fallback: str) -> Tuple[Tensor, Tensor]:
    """The scan of row ``backend`` in the kernels' layout; the last state
    is an empty tensor unless asked for."""
    y, last = _kernel(0, backend, fallback, u, delta, A, B, C, D, z,
                      delta_bias, delta_softplus, return_last_state)
    if last is None:
        return _in_layout_of(u, y), u.new_empty(0)
    return _in_layout_of(u, y), _in_layout_of(last.new_empty(last.shape),
                                              last)


@selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
      backend, fallback):
    last = (u.new_empty(u.shape[0], u.shape[1], A.shape[-1])
            if return_last_state else u.new_empty(0))
    return torch.empty_like(u), last


@torch.library.custom_op('mmmobilemamba::selective_scan_backward',
                         mutates_args=())
def selective_scan_backward_op(
        gy: Tensor, g_last: Optional[Tensor], u: Tensor, delta: Tensor,
        A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
        z: Optional[Tensor], delta_bias: Optional[Tensor],
        delta_softplus: bool, backend: str, fallback: str
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of u, delta, A, B, C, D, z, delta_bias (an empty tensor
    for each absent optional input)."""
    grads = _kernel(1, backend, fallback, gy, g_last, u, delta, A, B, C, D,
                    z, delta_bias, delta_softplus)
    return tuple(u.new_empty(0) if t is None else _in_layout_of(t, g)
                 for g, t in zip(grads, (u, delta, A, B, C, D, z,
                                         delta_bias)))


@selective_scan_backward_op.register_fake
def _(gy, g_last, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
      backend, fallback):
    return tuple(u.new_empty(0) if t is None else torch.empty_like(t)
                 for t in (u, delta, A, B, C, D, z, delta_bias))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, softplus, _, backend, fallback = \
        inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
    ctx.args = softplus, backend, fallback
    ctx.present = tuple(t is not None for t in (D, z, delta_bias))


def _backward(ctx, gy, g_last):
    saved = ctx.saved_tensors
    gy = torch.zeros_like(saved[0]) if gy is None else gy
    g_last = None if g_last is None or g_last.numel() == 0 else g_last
    grads = selective_scan_backward_op(gy, g_last, *saved, *ctx.args)
    optional = tuple(g if present else None
                     for g, present in zip(grads[5:], ctx.present))
    return grads[:5] + optional + (None, ) * 4


selective_scan_op.register_autograd(_backward, setup_context=_setup_context)
