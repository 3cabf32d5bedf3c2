"""The portable selective scan (the ``'portable'`` row): standard tensor
ops only, what ONNX and ExecuTorch exports record, op by op; autograd
differentiates it.

The recurrence ``h_t = a_t h_{t-1} + x_t`` is a log-depth doubling scan
(:func:`doubling_scan`: per level a Pad, a Slice, Muls and Adds), written in
the operators a delegate takes (XNNPACK): 4-D tensors while N = 1 (5-D
otherwise) built by reshapes, directions and states taken by slices that
keep their dimension (no ``select``, ``unsqueeze`` or ``expand`` copies),
sums over states and directions written as additions (no ``sum``), softplus
as :func:`softplus`. A chunked formulation (matrix products of decays
within chunks of sqrt(L) steps) ran 1.9x slower in onnxruntime and was
dropped; training on it is 2-3x slower than on the ``'torch'`` row
(docs/architecture.md#scan-backends).
"""
import torch
import torch.nn.functional as F


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))`` as ``relu(x) + log(exp(-|x|) + 1)``.

    Every piece is an XNNPACK operator (``F.softplus`` lowers to ``gt`` /
    ``log1p`` / ``where``, which it does not take); ``exp`` only sees
    arguments <= 0, so nothing overflows. The absolute error is that of
    ``1 + e`` rounded, at most 2^-24 in fp32.
    """
    return F.relu(x) + torch.log(torch.exp(-torch.abs(x)) + 1.)


def doubling_scan(a: torch.Tensor, x: torch.Tensor,
                  reverse: bool = False) -> torch.Tensor:
    """Solve ``h_t = a_t h_{t-1} + x_t`` (``h_{t+1}`` if ``reverse``) with
    h = 0 before the first step, along the last dimension, out of place.

    Args:
        a (Tensor): Decays, (..., L).
        x (Tensor): Inputs, shaped like ``a``.
        reverse (bool): Scan from the end. Defaults to False.

    Returns:
        Tensor: The states, shaped like ``x``.
    """
    length = x.shape[-1]
    if length == 1:  # a * 0 keeps A and delta in an autograd graph
        return x + a * 0.
    offset = 1
    while offset < length:
        pad = (0, offset) if reverse else (offset, 0)
        shift = (lambda t: t[..., offset:]) if reverse else (
            lambda t: t[..., :-offset])
        x = x + a * F.pad(shift(x), pad)
        if offset * 2 < length:  # the last level needs no decay products
            a = a * F.pad(shift(a), pad, value=1.)
        offset *= 2
    return x


def _per_channel(t: torch.Tensor, dim: int, acc: torch.dtype):
    """B or C (b, K, G, N, L) -> (b, K, dim or 1, L) when N = 1, else
    (b, K, dim or 1, N, L)."""
    batch, k_dirs, groups, n_state, length = t.shape
    t = t.to(acc)
    if n_state == 1:
        t = t.reshape(batch, k_dirs, groups, length)
    return t if groups == 1 else t.repeat_interleave(dim // groups, dim=2)


def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
         delta_softplus=False, return_last_state=False):
    """The scan in the kernels' layout (:mod:`.interface`); accumulates in
    fp32 (fp64 for fp64 u). Returns y and direction 0's last state (None
    unless asked for) in u's dtype."""
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    k_dirs, n_state = delta.shape[1], A.shape[-1]
    uf = u.to(acc)
    dt = delta.to(acc)  # (b, K, d, L)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc).reshape(1, k_dirs, dim, 1)
    if delta_softplus:
        dt = softplus(dt)
    dtu = dt * uf.reshape(batch, 1, dim, length)
    if n_state == 1:  # the state axis dropped: (b, K, d, L)
        logs = dt * A.to(acc).reshape(1, k_dirs, dim, 1)
    else:  # (b, K, d, N, L)
        logs = (dt.reshape(batch, k_dirs, dim, 1, length) *
                A.to(acc).reshape(1, k_dirs, dim, n_state, 1))
        dtu = dtu.reshape(batch, k_dirs, dim, 1, length)
    x = dtu * _per_channel(B, dim, acc)
    C = _per_channel(C, dim, acc)
    y = last = None
    for k in range(k_dirs):
        h = doubling_scan(torch.exp(logs[:, k:k + 1]), x[:, k:k + 1],
                          reverse=k % 2 == 1)
        if k == 0 and return_last_state:
            last = h[..., -1].reshape(batch, dim, n_state).to(u.dtype)
        hc = h * C[:, k:k + 1]
        y = hc if y is None else y + hc
    if n_state > 1:
        states = y
        y = states[:, :, :, :1]
        for i in range(1, n_state):
            y = y + states[:, :, :, i:i + 1]
    y = y.reshape(batch, dim, length)
    if D is not None:  # every direction reads the same u
        D = D.to(acc)
        skip = D[:1]
        for k in range(1, k_dirs):
            skip = skip + D[k:k + 1]
        y = y + skip.reshape(1, dim, 1) * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype), last
