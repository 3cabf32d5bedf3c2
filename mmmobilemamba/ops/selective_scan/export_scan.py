"""The ``'export'`` backend: the selective scan as a static graph of
standard ops, for ONNX export.

The fast ``'torch'`` backend works in place on slabs and plans its chunking
per sequence length in Python, which a tracer records as shape-specialised
in-place code that ONNX cannot express well. This backend writes the same
recurrence ``h_t = exp(l_t) h_{t-1} + x_t`` (``l_t = dt_t A <= 0``)
functionally, in one of two formulations that :data:`EXPORT_SCAN` selects.
The default is a doubling scan (:func:`doubling_scan`: log2(L) levels of
shifted products). The alternative is a chunked scan of a few large ops
(:func:`chunked_scan`): the sequence is cut into chunks of T steps; inside
a chunk the states are one matrix product with the lower-triangular matrix
of decays ``exp(S_i - S_j)``, i >= j (S the running sum of l); the states
carried from chunk to chunk come from the same construction one level up,
on the chunks' total decays. Every exponent is a sum of log-decays over a
segment, computed as a sum of those terms (never as a difference of two
running sums, which would cancel) and therefore <= 0; the upper triangle is
filled with -inf before ``exp``. Nothing overflows, at any step size.

About 20 graph nodes per scan instead of the doubling scan's five per level
(:func:`doubling_scan`), and no Pad per level. Work is O(L T) with T about
sqrt(L). Measured in onnxruntime 1.32 (1 thread, T2 at 192 px, batch 1) the
chunked graph is 1.9x slower than the doubling one (its batched
(T x T) @ (T x 1) products over thousands of tiny matrices dominate), so the
doubling scan stays the default: :data:`EXPORT_SCAN` selects the
formulation the backend traces.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..export_forms import delegate_forms

#: The formulation the 'export' backend uses: 'doubling' (default, the
#: faster graph in onnxruntime) or 'chunked'.
EXPORT_SCAN = 'doubling'


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
    if length == 1:  # h_0 = a_0 * 0 + x_0
        if delegate_forms():  # zeros_like is no delegate's operator
            return x
        return x + a * torch.zeros_like(x)  # keeps a in the autograd graph
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


def chunk_length(length: int) -> int:
    """Chunk size T of :func:`chunked_scan` for a sequence of ``length``:
    about sqrt(L), which balances the chunk matrices (L T entries) against
    the matrix across chunks ((L / T)^2)."""
    return max(1, min(length, math.ceil(math.sqrt(length))))


def _segment_sums(logs: torch.Tensor) -> torch.Tensor:
    """(..., T) log-decays -> (..., T, T) with entry [i, j] the sum of
    ``logs[j+1 .. i]`` for i >= j (0 on the diagonal) and -inf above it.

    Each entry is summed from its own terms (a masked running sum down the
    columns), so it is exactly as accurate as the sequential product.
    """
    t = logs.shape[-1]
    ones = torch.ones(t, t, dtype=torch.bool, device=logs.device)
    strictly_lower = torch.tril(ones, -1)
    terms = logs[..., :, None].expand(*logs.shape, t)  # [k, j] = logs[k]
    terms = terms.masked_fill(~strictly_lower, 0.)
    sums = torch.cumsum(terms, dim=-2)  # [i, j] = sum_{j < k <= i} logs[k]
    return sums.masked_fill(~torch.tril(ones), float('-inf'))


def chunked_scan(logs: torch.Tensor, x: torch.Tensor,
                 chunk: Optional[int] = None) -> torch.Tensor:
    """Solve ``h_t = exp(logs_t) h_{t-1} + x_t`` with h = 0 before the first
    step, along the last dimension, out of place.

    Args:
        logs (Tensor): Log-decays, (..., L), every entry <= 0.
        x (Tensor): Inputs, (..., L), same shape.
        chunk (int, optional): Chunk size T; None: :func:`chunk_length`.

    Returns:
        Tensor: The states h, shaped like ``x``.
    """
    length = x.shape[-1]
    t = chunk_length(length) if chunk is None else max(1, min(chunk, length))
    n = -(-length // t)
    pad = n * t - length
    if pad:  # trailing zero steps change nothing before them
        logs = F.pad(logs, (0, pad))
        x = F.pad(x, (0, pad))
    lead = x.shape[:-1]
    logs = logs.reshape(*lead, n, t)
    x = x.reshape(*lead, n, t)
    # Within each chunk, from a zero state.
    decay = torch.exp(_segment_sums(logs))  # (..., n, T, T)
    h = torch.matmul(decay, x[..., None])[..., 0]  # (..., n, T)
    if n > 1:
        # State at the end of each chunk, carried across chunks: the same
        # construction on the chunks' total log-decays and end states.
        totals = logs.sum(-1)  # (..., n)
        carried = torch.matmul(torch.exp(_segment_sums(totals)),
                               h[..., -1:])  # (..., n, 1): end states
        carried = F.pad(carried[..., :-1, :], (0, 0, 1, 0))  # into chunk c
        # exp(running sum from the chunk start): a segment sum, <= 0.
        h = h + torch.exp(torch.cumsum(logs, dim=-1)) * carried
    h = h.reshape(*lead, n * t)
    return h[..., :length] if pad else h


def _scan(logs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The forward scan in the formulation :data:`EXPORT_SCAN` names."""
    if EXPORT_SCAN == 'chunked':
        return chunked_scan(logs, x)
    return doubling_scan(torch.exp(logs), x)


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
    logs = dt[:, :, None, :] * A.to(acc)[None, :, :, None]
    x = (dt * uf)[:, :, None, :] * _per_channel(B.to(acc), dim)
    h = _scan(logs, x)  # (batch, dim, N, L)
    y = (h * _per_channel(C.to(acc), dim)).sum(2)
    if D is not None:
        y = y + D.to(acc)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(u.dtype)
    if return_last_state:
        return y, h[..., -1].to(u.dtype)
    return y


def softplus_delegate_form(x: torch.Tensor) -> torch.Tensor:
    """``softplus(x) = log(1 + exp(x))`` as ``relu(x) + log(1 + exp(-|x|))``.

    Every piece is an XNNPACK operator (``F.softplus`` lowers to a
    threshold branch, ``gt`` / ``log1p`` / ``where``, that XNNPACK does not
    take). ``exp`` only sees arguments <= 0, so nothing overflows at any
    |x|; the absolute error is that of ``1 + e`` rounded, at most 2^-24
    (about 6e-8), which is what ``log`` instead of ``log1p`` costs where
    ``exp(-|x|)`` is below the float32 epsilon.
    """
    return F.relu(x) + torch.log(torch.exp(-torch.abs(x)) + 1.)


def _bidirectional_delegate_form(u, delta, A, B, C, D, delta_bias,
                                 delta_softplus):
    """:func:`selective_scan_bidirectional_export` in the operators that
    XNNPACK takes (:func:`~mmmobilemamba.ops.export_forms.delegate_forms`):
    4-D tensors while N = 1 (5-D otherwise), directions and states taken by
    slices that keep their dimension (no ``select`` / ``unsqueeze`` /
    ``expand`` copies), sums over the state and the directions written as
    additions (XNNPACK has no ``sum``), softplus in
    :func:`softplus_delegate_form`. Same contract and values."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    n_state = A.shape[-1]
    uf = u.to(acc)
    dt = delta.to(acc)  # (batch, 2, dim, L)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc).reshape(1, 2, dim, 1)
    if delta_softplus:
        dt = softplus_delegate_form(dt)
    A, B, C = A.to(acc), B.to(acc), C.to(acc)  # B, C: (batch, 2, N, L)
    dtu = dt * uf.reshape(batch, 1, dim, length)
    if n_state == 1:  # the state axis dropped: (batch, 2, dim, L)
        logs = dt * A.reshape(1, 2, dim, 1)
        x = dtu * B
    else:  # (batch, 2, dim, N, L)
        logs = (dt.reshape(batch, 2, dim, 1, length) *
                A.reshape(1, 2, dim, n_state, 1))
        x = (dtu.reshape(batch, 2, dim, 1, length) *
             B.reshape(batch, 2, 1, n_state, length))
        C = C.reshape(batch, 2, 1, n_state, length)
    h0 = doubling_scan(torch.exp(logs[:, :1]), x[:, :1])
    h1 = doubling_scan(torch.exp(logs[:, 1:]), x[:, 1:], reverse=True)
    hc = h0 * C[:, :1] + h1 * C[:, 1:]  # (batch, 1, dim[, N], L)
    if n_state == 1:
        y = hc.reshape(batch, dim, length)
    else:
        y = hc[:, :, :, :1]
        for i in range(1, n_state):
            y = y + hc[:, :, :, i:i + 1]
        y = y.reshape(batch, dim, length)
    if D is not None:  # both directions read the same u
        D = D.to(acc)
        y = y + (D[:dim] + D[dim:]).reshape(1, dim, 1) * uf
    return y.to(u.dtype)


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
    both directions in one set of ops, direction 1 scanned from the end.
    While a delegate's graph is built (:func:`delegate_forms`), the
    doubling scan is written in the operators the delegate takes."""
    if delegate_forms() and EXPORT_SCAN == 'doubling':
        return _bidirectional_delegate_form(u, delta, A, B, C, D, delta_bias,
                                            delta_softplus)
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    uf = u.to(acc)
    dt = delta.to(acc)  # (batch, 2, dim, L)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc).reshape(1, 2, dim, 1)
    if delta_softplus:
        dt = F.softplus(dt)
    n_state = A.shape[-1]
    logs = dt[:, :, :, None, :] * A.to(acc).reshape(1, 2, dim, n_state, 1)
    x = (dt * uf[:, None])[:, :, :, None, :] * B.to(acc)[:, :, None]
    if EXPORT_SCAN == 'chunked':
        # Direction 1 runs backwards: scan it time-reversed, both directions
        # in one set of ops, and reverse its states back.
        flip = lambda t: torch.flip(t, dims=[-1])  # noqa: E731
        h = chunked_scan(torch.stack([logs[:, 0], flip(logs[:, 1])], 1),
                         torch.stack([x[:, 0], flip(x[:, 1])], 1))
        h0, h1 = h[:, 0], flip(h[:, 1])
    else:
        h0 = doubling_scan(torch.exp(logs[:, 0]), x[:, 0])
        h1 = doubling_scan(torch.exp(logs[:, 1]), x[:, 1], reverse=True)
    C = C.to(acc)
    y = (h0 * C[:, 0, None]).sum(2) + (h1 * C[:, 1, None]).sum(2)
    if D is not None:  # both directions read the same u
        y = y + D.to(acc).reshape(2, dim).sum(0)[:, None] * uf
    return y.to(u.dtype)
