"""The selective scan as one PyTorch custom operator.

``torch.ops.mmmobilemamba.selective_scan`` is what ``torch.compile`` and
``torch.export`` see: a single op with a fake (meta) implementation that
gives output shapes without running anything, and a registered autograd
formula whose backward pass is a second op,
``torch.ops.mmmobilemamba.selective_scan_backward``. Both ops take the
backend's name as an argument and run that backend's kernels (see
:mod:`.backends`): the compiled CPU kernels, the Triton kernels or the
pure-PyTorch code. So the scan is never a graph break, and the model's
graph records which implementation it was traced with.

The op's layout covers both public forms: K scan directions (direction k
runs backwards in time when k is odd), G groups of B/C:

    u (b, d, L); delta (b, K, d, L); A (K, d, N); B, C (b, K, G, N, L);
    D, delta_bias (K, d), optional; z (b, d, L), optional.

It returns y (b, d, L) and direction 0's last state (b, d, N) (an empty
tensor unless asked for), both in u's dtype; y and the gradients of u,
delta and z have the layout ``torch.empty_like`` gives their inputs (a
channels-last map flattened to (b, d, L) gets a token-major y), whichever
backend ran, because the fake implementation promises that layout to the
compiler.
"""
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from ..eager import eager_inference

#: backend name -> (forward, backward) in the op's layout. Filled by
#: :mod:`.backends` from its table; the op only looks names up here.
KERNELS: Dict[str, Tuple[Callable, Callable]] = {}


def _kernels(backend: str) -> Tuple[Callable, Callable]:
    try:
        return KERNELS[backend]
    except KeyError:
        raise ValueError(f'selective-scan backend {backend!r} does not '
                         f'implement the scan operator; implemented: '
                         f'{sorted(KERNELS)}') from None


def _empty(like: Tensor) -> Tensor:
    return like.new_empty(0)


def _in_layout_of(t: Tensor, out: Tensor) -> Tensor:
    """``out`` with the strides of ``torch.empty_like(t)``."""
    if out.stride() == t.stride():
        return out
    like = torch.empty_like(t)
    return out if out.stride() == like.stride() else like.copy_(out)


@torch.library.custom_op('mmmobilemamba::selective_scan', mutates_args=())
def selective_scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                      C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
                      delta_bias: Optional[Tensor], delta_softplus: bool,
                      return_last_state: bool,
                      backend: str) -> Tuple[Tensor, Tensor]:
    forward, _ = _kernels(backend)
    y, last = forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                      return_last_state)
    return _in_layout_of(u, y), (last if last is not None else _empty(u))


@selective_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
      backend):
    y = torch.empty_like(u)
    last = (u.new_empty(u.shape[0], u.shape[1], A.shape[-1])
            if return_last_state else _empty(u))
    return y, last


@torch.library.custom_op('mmmobilemamba::selective_scan_backward',
                         mutates_args=())
def selective_scan_backward_op(
        gy: Tensor, g_last: Optional[Tensor], u: Tensor, delta: Tensor,
        A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
        z: Optional[Tensor], delta_bias: Optional[Tensor],
        delta_softplus: bool, backend: str
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of u, delta, A, B, C, D, z, delta_bias (an empty tensor
    for each absent optional input)."""
    _, backward = _kernels(backend)
    grads = backward(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
                     delta_softplus)
    like = (u, delta, A, B, C, D, z, delta_bias)
    return tuple(_empty(u) if g is None or t is None else _in_layout_of(t, g)
                 for g, t in zip(grads, like))


@selective_scan_backward_op.register_fake
def _(gy, g_last, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
      backend):
    like = (u, delta, A, B, C, D, z, delta_bias)
    return tuple(_empty(u) if t is None else torch.empty_like(t)
                 for t in like)


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, softplus, _, backend = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
    ctx.softplus, ctx.backend = softplus, backend
    ctx.present = tuple(t is not None for t in (D, z, delta_bias))


def _backward(ctx, gy, g_last):
    u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
    if gy is None:
        gy = torch.zeros_like(u)
    if g_last is not None and g_last.numel() == 0:
        g_last = None
    grads = selective_scan_backward_op(gy, g_last, u, delta, A, B, C, D, z,
                                       delta_bias, ctx.softplus, ctx.backend)
    gu, gdelta, gA, gB, gC, gD, gz, gbias = grads
    has_d, has_z, has_bias = ctx.present
    return (gu, gdelta, gA, gB, gC, gD if has_d else None,
            gz if has_z else None, gbias if has_bias else None, None, None,
            None)


selective_scan_op.register_autograd(_backward, setup_context=_setup_context)


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
          return_last_state, backend):
    """The op, or its forward kernel directly in eager inference (the op's
    Python wrappers cost more than a batch-1 scan; :mod:`..eager`)."""
    if eager_inference(u, delta, A, B, C, D, z, delta_bias):
        forward, _ = _kernels(backend)
        y, last = forward(u, delta, A, B, C, D, z, delta_bias,
                          delta_softplus, return_last_state)
        return y, (last if last is not None else _empty(u))
    return selective_scan_op(u, delta, A, B, C, D, z, delta_bias,
                             delta_softplus, return_last_state, backend)


def scan_one_direction(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False, *,
                       backend: str):
    """:func:`~.api.selective_scan` (validated inputs) through the op."""
    lift = lambda t: None if t is None else t[None]  # noqa: E731
    bc = (lambda t: t[:, None, None]) if B.dim() == 3 else (
        lambda t: t[:, None])
    y, last = _scan(u, delta[:, None], A[None], bc(B), bc(C), lift(D), z,
                    lift(delta_bias), delta_softplus, return_last_state,
                    backend)
    return (y, last) if return_last_state else y


def scan_two_directions(u, delta, A, B, C, D=None, delta_bias=None,
                        delta_softplus=True, *, backend: str):
    """:func:`~.api.selective_scan_bidirectional` (validated inputs)
    through the op."""
    dim = u.shape[1]
    per_dir = lambda t: None if t is None else t.reshape(2, dim)  # noqa
    y, _ = _scan(u, delta, A.reshape(2, dim, A.shape[-1]), B[:, :, None],
                 C[:, :, None], per_dir(D), None, per_dir(delta_bias),
                 delta_softplus, False, backend)
    return y
