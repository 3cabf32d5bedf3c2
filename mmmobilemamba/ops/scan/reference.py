"""The reference selective scan: a plain loop over time, the numeric truth.

Written for clarity, not speed: every test compares the other backends with
it (run in fp64) and every benchmark ratio is taken against it. Autograd
differentiates it. It takes the kernels' layout (:mod:`.interface`).
"""
import torch
import torch.nn.functional as F


def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
         delta_softplus=False, return_last_state=False):
    """Sequential scan of K directions (odd k backwards in time), summed.

    Accumulates in fp32 (fp64 for fp64 u); returns y and direction 0's last
    state (None unless asked for), both in u's dtype.
    """
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    k_dirs, groups = delta.shape[1], B.shape[2]
    uf = u.to(acc)
    y = last = 0
    for k in range(k_dirs):
        dt = delta[:, k].to(acc)
        if delta_bias is not None:
            dt = dt + delta_bias[k].to(acc)[:, None]
        if delta_softplus:
            dt = F.softplus(dt)
        # (batch, G, N, L) -> (batch, dim, N, L): channel d reads group
        # d // (dim / G)
        Bk = B[:, k].to(acc).repeat_interleave(dim // groups, dim=1)
        Ck = C[:, k].to(acc).repeat_interleave(dim // groups, dim=1)
        h = uf.new_zeros(batch, dim, A.shape[-1])
        ys = [None] * length
        for t in (reversed(range(length)) if k % 2 else range(length)):
            h = (torch.exp(dt[:, :, t, None] * A[k].to(acc)) * h +
                 (dt[:, :, t] * uf[:, :, t])[..., None] * Bk[..., t])
            ys[t] = (h * Ck[..., t]).sum(-1)
        y = y + torch.stack(ys, -1)
        if k == 0:
            last = h
    if D is not None:  # every direction reads the same u
        y = y + D.to(acc).sum(0)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype), (last.to(u.dtype) if return_last_state else None)
