"""In-place first-order linear recurrence along the first (time) dimension.

``h_t = a_t * h_{t-1} + x_t`` (or, reversed, ``h_t = a_t * h_{t+1} + x_t``)
with ``h = 0`` before the first step. Time is the *first* dimension, so every
PyTorch call works on whole time steps, i.e. on contiguous runs of all the
other (batch, channel, state) elements: the calls vectorise, and their count
depends on L only, not on how many sequences are scanned at once.

A two-level chunked scan keeps the number of calls near ``2 sqrt(2 L)``
instead of ``L``: with chunks of ``T`` steps,

1. every chunk is scanned from a zero state (``T - 1`` calls, each over all
   chunks at once), alongside the running products of the chunk's decays;
2. the chunk end states are scanned with the chunks' total decays (the same
   recurrence over ``L / T`` steps, solved by recursion), which makes them
   the true states;
3. each chunk's carried-in state, times the running decay products, is
   added to the chunk's other steps (one call).

Only products of decays are formed, never a division by a cumulative decay,
so any ``a`` in [0, 1] is safe (a decay that underflows to 0 just resets the
state). A small cost model (per-call overhead plus per-element work) picks
the chunk size, or a plain step loop where that is cheaper (short sequences).
"""
import functools
from typing import Optional, Tuple

import torch

#: Cost model of one PyTorch call on n contiguous elements:
#: _CALL_US + n * _ELEM_US (CPU; rough, it only has to rank the plans).
_CALL_US = 3.0
_ELEM_US = 5e-4
#: Largest chunk a level may use.
_MAX_CHUNK = 64


def _call(n: float) -> float:
    return _CALL_US + _ELEM_US * n


@functools.lru_cache(maxsize=None)
def _plan(length: int, rows: int = 1) -> Tuple[int, float]:
    """(chunk size, modelled cost in us) of the cheapest scan of ``rows``
    sequences of ``length`` steps.

    Chunk size 0 means a plain step-by-step loop (``length - 1`` calls over
    ``rows`` elements each).
    """
    best = (0, max(length - 1, 0) * _call(rows))
    for chunk in range(2, min(_MAX_CHUNK, length // 2) + 1):
        n_chunks = length // chunk
        tail = length - n_chunks * chunk
        # per in-chunk step: the scan step and the decay product
        cost = (2 * (chunk - 1) * _call(rows * n_chunks) +
                _call(rows * n_chunks * chunk) +  # carry fold
                _plan(n_chunks, rows)[1] + tail * _call(rows))
        if cost < best[1]:
            best = (chunk, cost)
    return best


def _rows_bucket(x: torch.Tensor) -> int:
    """Elements per time step, rounded to a power of two (plan cache key)."""
    rows = 1
    for size in x.shape[1:]:
        rows *= int(size)  # (sizes can be tensors while tracing)
    return 1 << (max(rows, 1).bit_length() - 1)


def _steps_(a: torch.Tensor, x: torch.Tensor, positions: range,
            reverse: bool) -> None:
    """Sequential steps at ``positions`` (each reads its predecessor)."""
    if len(positions) == 0:
        return
    step = 1 if reverse else -1
    xs, as_ = x.unbind(0), a.unbind(0)  # one call for all the step views
    for t in positions:
        xs[t].addcmul_(as_[t], xs[t + step])


def linear_scan_(a: torch.Tensor, x: torch.Tensor, reverse: bool = False,
                 workspace: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Solve ``h_t = a_t h_{t-1} + x_t`` along dim 0 in place of ``x``.

    Args:
        a (Tensor): Decays in [0, 1], (L, ...), same shape as ``x``; read
            only.
        x (Tensor): Inputs, (L, ...); overwritten by the states h. Any
            strides; contiguous steps (``x[t]``) are fastest.
        reverse (bool): Scan from t = L-1 down to 0, i.e.
            ``h_t = a_t h_{t+1} + x_t``. Defaults to False.
        workspace (Tensor, optional): Scratch with at least ``x.numel()``
            elements of x's dtype, for the decay products. Defaults to None
            (allocated here).

    Returns:
        Tensor: ``x``, now holding h.
    """
    length = x.shape[0]
    if length <= 1:
        return x
    chunk, _ = _plan(length, _rows_bucket(x))
    if chunk == 0:
        _steps_(a, x, range(length - 2, -1, -1) if reverse else
                range(1, length), reverse)
        return x
    n_chunks = length // chunk
    tail = length - n_chunks * chunk
    # The chunked part starts where the scan starts; the tail is scanned last.
    main = slice(tail, length) if reverse else slice(0, length - tail)
    av = a[main].unflatten(0, (n_chunks, chunk))
    xv = x[main].unflatten(0, (n_chunks, chunk))
    if workspace is None:
        prod = torch.empty(av.shape, dtype=x.dtype, device=x.device)
    else:
        prod = workspace.flatten()[:av.numel()].view(av.shape)
    # 1. scan inside every chunk from a zero state; prod_i = a_first..a_i.
    order = range(chunk - 1, -1, -1) if reverse else range(chunk)
    first, step = order[0], (1 if reverse else -1)
    xs, as_, ps = xv.unbind(1), av.unbind(1), prod.unbind(1)
    ps[first].copy_(as_[first])
    for i in order[1:]:
        xs[i].addcmul_(as_[i], xs[i + step])
        torch.mul(as_[i], ps[i + step], out=ps[i])
    # 2. chunk end states with the chunks' decays: one level down.
    last = order[-1]
    ends = xv[:, last]
    linear_scan_(prod[:, last], ends, reverse)
    # 3. fold each carried-in state into its chunk's other steps.
    if reverse:
        xv[:-1, 1:].addcmul_(prod[:-1, 1:], ends[1:].unsqueeze(1))
        _steps_(a, x, range(tail - 1, -1, -1), reverse)
    else:
        xv[1:, :-1].addcmul_(prod[1:, :-1], ends[:-1].unsqueeze(1))
        _steps_(a, x, range(length - tail, length), reverse)
    return x
