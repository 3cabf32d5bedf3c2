"""The reference selective scan: a plain loop over time.

Written for clarity, not speed. It is the ground truth of every test and the
baseline of every benchmark ratio. It accumulates in fp32 (or fp64 when given
fp64 inputs) and is differentiable by autograd.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _expand_groups(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, N, L) or (batch, G, N, L) -> (batch, dim, N, L)."""
    if x.dim() == 3:
        return x.unsqueeze(1).expand(-1, dim, -1, -1)
    groups = x.shape[1]
    return x.repeat_interleave(dim // groups, dim=1)


def selective_scan_ref(
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
) -> torch.Tensor | Tuple[torch.Tensor, torch.Tensor]:
    """Sequential selective scan; same contract as
    :func:`mmmobilemamba.ops.selective_scan` (inputs already validated)."""
    out_dtype = u.dtype
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A = u.to(acc), delta.to(acc), A.to(acc)
    batch, dim, length = u.shape
    Bx = _expand_groups(B.to(acc), dim)  # (batch, dim, N, L)
    Cx = _expand_groups(C.to(acc), dim)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # (batch, dim, N)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(acc)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(acc))
    y = y.to(out_dtype)
    return (y, h.to(out_dtype)) if return_last_state else y


def selective_scan_bidirectional_ref(u, delta, A, B, C, D=None,
                                     delta_bias=None, delta_softplus=True):
    """Two sequential scans, raster order and reverse order flipped back;
    same contract as :func:`mmmobilemamba.ops.selective_scan_bidirectional`
    (inputs already validated)."""
    dim = u.shape[1]

    def part(k, t):
        return None if t is None else t[k * dim:(k + 1) * dim]

    y0 = selective_scan_ref(u, delta[:, 0], part(0, A), B[:, 0], C[:, 0],
                            part(0, D), None, part(0, delta_bias),
                            delta_softplus)
    flip = lambda t: t.flip(-1)  # noqa: E731
    y1 = selective_scan_ref(
        flip(u), flip(delta[:, 1]), part(1, A), flip(B[:, 1]), flip(C[:, 1]),
        part(1, D), None, part(1, delta_bias), delta_softplus)
    return y0 + flip(y1)
