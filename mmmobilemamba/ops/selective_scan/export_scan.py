"""The ``'export'`` backend: the selective scan as a static graph of
standard ops, for ONNX export.

The fast ``'torch'`` backend works in place on slabs and plans its chunking
per sequence length in Python, which a tracer records as shape-specialised
in-place code that ONNX cannot express well. This formulation is the same
recurrence written functionally, as a log-depth doubling scan
(Hillis-Steele): with offsets 1, 2, 4, ... < L,

    h_t <- h_t + a_t * h_{t - offset};   a_t <- a_t * a_{t - offset}

where out-of-range neighbours are a zero state and a unit decay (``F.pad``
supplies them, so the graph only has Pad, Slice, Mul, Add, Exp, Softplus,
ReduceSum and friends, and the batch size stays symbolic). Direction 1 pads
on the other side instead of flipping. It only multiplies decays (no
division by cumulative products), so it is as stable as the sequential
loop. It costs O(L log L) work, which is fine for export and inference
parity, not for training speed.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F


def doubling_scan(a: torch.Tensor, x: torch.Tensor,
                  reverse: bool = False) -> torch.Tensor:
    """Solve ``h_t = a_t h_{t-1} + x_t`` (``h_{t+1}`` if reverse), h = 0
    before the first step, along the last dimension; out of place.

    Args:
        a (Tensor): Decays, (..., L).
        x (Tensor): Inputs, (..., L), same shape as ``a``.
        reverse (bool): Scan from the end. Defaults to False.

    Returns:
        Tensor: The states h, shaped like ``x``.
    """
    length = x.shape[-1]
    if length == 1:  # h_0 = a_0 * 0 + x_0: keeps a in the autograd graph
        return x + a * torch.zeros_like(x)
    offset = 1
    while offset < length:
        if reverse:
            x_nb = F.pad(x[..., offset:], (0, offset))
        else:
            x_nb = F.pad(x[..., :-offset], (offset, 0))
        x = x + a * x_nb
        if offset * 2 < length:  # the last level needs no decay products
            if reverse:
                a_nb = F.pad(a[..., offset:], (0, offset), value=1.)
            else:
                a_nb = F.pad(a[..., :-offset], (offset, 0), value=1.)
            a = a * a_nb
        offset *= 2
    return x


def _per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, N, L) or grouped (batch, G, N, L) -> (batch, dim | 1, N, L)."""
    if t.dim() == 3:
        return t[:, None]
    return t.repeat_interleave(dim // t.shape[1], dim=1)


def selective_scan_export(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """The ``'export'`` backend of :func:`selective_scan` (same contract;
    inputs already validated). Accumulates in fp32 (fp64 for fp64 u)."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    dim = u.shape[1]
    uf = u.to(acc)
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    a = torch.exp(dt[:, :, None, :] * A.to(acc)[None, :, :, None])
    x = (dt * uf)[:, :, None, :] * _per_channel(B.to(acc), dim)
    h = doubling_scan(a, x)  # (batch, dim, N, L)
    y = (h * _per_channel(C.to(acc), dim)).sum(2)
    if D is not None:
        y = y + D.to(acc)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(u.dtype)
    if return_last_state:
        return y, h[..., -1].to(u.dtype)
    return y


def selective_scan_bidirectional_export(u: torch.Tensor,
                                        delta: torch.Tensor,
                                        A: torch.Tensor,
                                        B: torch.Tensor,
                                        C: torch.Tensor,
                                        D: Optional[torch.Tensor] = None,
                                        delta_bias: Optional[
                                            torch.Tensor] = None,
                                        delta_softplus: bool = True
                                        ) -> torch.Tensor:
    """The ``'export'`` backend of :func:`selective_scan_bidirectional`:
    both directions in one set of ops, direction 1 scanned from the end."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    uf = u.to(acc)
    dt = delta.to(acc)  # (batch, 2, dim, L)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc).reshape(1, 2, dim, 1)
    if delta_softplus:
        dt = F.softplus(dt)
    n_state = A.shape[-1]
    a = torch.exp(dt[:, :, :, None, :] *
                  A.to(acc).reshape(1, 2, dim, n_state, 1))
    x = (dt * uf[:, None])[:, :, :, None, :] * B.to(acc)[:, :, None]
    h0 = doubling_scan(a[:, 0], x[:, 0])
    h1 = doubling_scan(a[:, 1], x[:, 1], reverse=True)
    C = C.to(acc)
    y = (h0 * C[:, 0, None]).sum(2) + (h1 * C[:, 1, None]).sum(2)
    if D is not None:  # both directions read the same u
        y = y + D.to(acc).reshape(2, dim).sum(0)[:, None] * uf
    return y.to(u.dtype)
