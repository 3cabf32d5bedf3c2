"""In-place first-order linear recurrence along the last dimension.

``h_t = a_t * h_{t-1} + x_t`` (or, reversed, ``h_t = a_t * h_{t+1} + x_t``)
with ``h = 0`` before the first step, computed by a recursive chunked scan
that uses only products of decays: no division by cumulative decays, so any
``a`` in [0, 1] is safe (a decay that underflows to 0 simply resets the
state).

One level splits time into chunks of ``T`` steps (``T`` in 2..4):

1. the end state of every chunk started from zero (``T - 1`` strided
   ``addcmul`` calls, each over all chunks at once) and the chunk's total
   decay (its product of ``a``);
2. the same recurrence over chunks, solved by recursion (length ``L / T``);
3. every step inside the chunks, started from the carried-in state (one
   ``addcmul`` to fold the carry in, ``T - 1`` strided ``addcmul`` calls).

So the work is a geometric series (a few passes over the data in total), the
number of PyTorch calls grows as ``4 log2 L`` and every call is a plain
tensor op on a strided view: the loops run over chunk positions and levels,
never over the data's values, which keeps the op traceable and exportable.
A small cost model (per-call overhead plus per-element work) picks the chunk
size of each level, or a plain step-by-step loop where that is cheaper:
short sequences, or so many sequences at once that each step's call is
already efficient.
"""
import functools
from typing import Callable, Optional, Sequence, Tuple

import torch

#: Chunk sizes a level may use; small chunks keep the strided passes few.
_CHUNK_SIZES = (2, 3, 4)
#: Cost model of one PyTorch call on n elements: _CALL_US + n * _ELEM_US
#: (CPU, strided views; rough, it only has to rank the plans).
_CALL_US = 4.0
_ELEM_US = 1e-3


def _call(n: float) -> float:
    return _CALL_US + _ELEM_US * n


@functools.lru_cache(maxsize=None)
def _plan(length: int, rows: int = 1) -> Tuple[int, float]:
    """(chunk size, modelled cost in us) of the cheapest scan of ``rows``
    sequences of ``length`` steps.

    Chunk size 0 means a plain step-by-step loop (``length - 1`` calls over
    ``rows`` elements): best for short sequences, and for many rows, where
    every call does enough work to hide its overhead.
    """
    best = (0, max(length - 1, 0) * _call(rows))
    for chunk in _CHUNK_SIZES:
        n_chunks = length // chunk
        if n_chunks < 2:
            continue
        tail = length - n_chunks * chunk
        per_chunk = _call(rows * n_chunks)
        # phase 1 + product + recursion + fold + phase 3 + tail steps
        cost = ((2 * (chunk - 1) + 2) * per_chunk +
                _plan(n_chunks, rows)[1] + tail * _call(rows))
        if cost < best[1]:
            best = (chunk, cost)
    return best


def _rows_bucket(x: torch.Tensor) -> int:
    """Number of sequences, rounded to a power of two (for the plan cache)."""
    return 1 << (max(x.numel() // x.shape[-1], 1).bit_length() - 1)


def _steps_(a: torch.Tensor, x: torch.Tensor, length: int,
            reverse: bool) -> None:
    """Step through the whole last dimension (of ``length``), whose first
    element (last when ``reverse``) already holds its state. (``unbind``
    makes the per-step views in one call, about 1 us a view cheaper than
    indexing: short sequences are bound by per-call overhead.)"""
    av, xv = a.unbind(-1), x.unbind(-1)
    step = 1 if reverse else -1
    for t in range(length - 2, -1, -1) if reverse else range(1, length):
        xv[t].addcmul_(av[t], xv[t + step])


#: ``scratch(name, shape)`` -> a contiguous tensor of that shape that no
#: other live name shares (see ``torch_scan._Scratch``).
Scratch = Callable[[str, Sequence[int]], torch.Tensor]


def fresh_buffers(like: torch.Tensor) -> Scratch:
    """A ``Scratch`` that allocates new memory (``like``'s dtype, device)
    for every request."""
    return lambda name, shape: like.new_empty(shape)


def linear_scan_(a: torch.Tensor, x: torch.Tensor, reverse: bool = False,
                 scratch: Optional[Scratch] = None,
                 _depth: int = 0) -> torch.Tensor:
    """Solve ``h_t = a_t h_{t-1} + x_t`` in place of ``x`` and return it.

    Args:
        a (Tensor): Decays, (..., L), same shape as ``x``; read only.
        x (Tensor): Inputs, (..., L); overwritten by the states h. Its last
            dimension must have stride 1 (other dimensions may be strided).
        reverse (bool): Scan from t = L-1 down to 0, i.e.
            ``h_t = a_t h_{t+1} + x_t``. Defaults to False.
        scratch (callable, optional): Where the per-level chunk states and
            decays go, ``scratch(name, shape) -> Tensor``; buffers kept
            between calls save the page faults of fresh memory. None
            allocates them. Defaults to None.

    Returns:
        Tensor: ``x``, now holding h.
    """
    length = x.shape[-1]
    if length <= 1:
        return x
    chunk, _ = _plan(length, _rows_bucket(x))
    if chunk == 0:
        _steps_(a, x, length, reverse)
        return x
    n_chunks = length // chunk
    tail = length - n_chunks * chunk
    # The chunked part starts where the scan starts; the tail is scanned last.
    main = slice(tail, length) if reverse else slice(0, length - tail)
    chunked = tuple(x.shape[:-1]) + (n_chunks, chunk)
    a_main, x_main = (a[..., main], x[..., main]) if tail else (a, x)
    av, xv = a_main.view(chunked).unbind(-1), x_main.view(chunked).unbind(-1)
    order = range(chunk - 1, -1, -1) if reverse else range(chunk)

    scratch = scratch or fresh_buffers(x)
    level_shape = xv[0].shape
    # 1. chunk end states from a zero start, and chunk decays.
    ends = torch.addcmul(xv[order[1]], av[order[1]], xv[order[0]],
                         out=scratch(f'scan_ends{_depth}', level_shape))
    for i in order[2:]:  # (out= may alias an input element for element)
        torch.addcmul(xv[i], av[i], ends, out=ends)
    # Elementwise products: a reduction over a tiny last dim is much slower.
    decays = torch.mul(av[0], av[1],
                       out=scratch(f'scan_decays{_depth}', level_shape))
    for i in range(2, chunk):
        decays.mul_(av[i])
    # 2. carries between chunks: the same recurrence, one level down.
    linear_scan_(decays, ends, reverse, scratch, _depth + 1)
    # 3. fold each carry into its chunk's first step, then step through.
    first = order[0]
    if reverse:
        xv[first][..., :-1].addcmul_(av[first][..., :-1], ends[..., 1:])
    else:
        xv[first][..., 1:].addcmul_(av[first][..., 1:], ends[..., :-1])
    step = 1 if reverse else -1
    for i in order[1:]:
        xv[i].addcmul_(av[i], xv[i + step])
    if tail:
        # the tail and the state it starts from
        window = slice(0, tail + 1) if reverse else slice(length - tail - 1,
                                                          length)
        _steps_(a[..., window], x[..., window], tail + 1, reverse)
    return x
