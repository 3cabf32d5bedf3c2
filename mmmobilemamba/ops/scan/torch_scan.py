"""The ``'torch'`` row: the scan operator's kernels in plain PyTorch ops.

The fallback where the compiled CPU kernels are not built or the Triton
kernels fail; it runs on any device. It trains 2-3x faster on a CPU than
the portable form's doubling scan (docs/architecture.md#scan-backends),
which is why both exist. Both directions are computed by the same tensor
ops: u is broadcast to them (never flipped or copied) and direction 1 is
scanned backwards in time by :func:`.linear_recurrence.linear_scan_`, so
its inputs and outputs stay in raster order. The backward pass recomputes
the states and runs the adjoint recurrence, the same scan in the opposite
time direction.

Internally every tensor is viewed as (batch, K, G, dim / G, N, L): K scan
directions, G groups of B/C. The work is split into slabs of (batch, group,
channel) rows small enough for their temporaries to stay in cache, which
keeps the extra memory to a slab's worth instead of a multiple of the
inputs. Every slab-sized temporary is a view of a named scratch buffer
(:class:`_Scratch`) written with ``out=`` and kept per thread between calls:
on the machines we measured, the page faults of fresh memory cost more than
the arithmetic on it.

Accumulation is in fp32 (fp64 for fp64 inputs); y is returned in u's dtype
and every gradient in its input's dtype.
"""
import math
import threading
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .linear_recurrence import Scratch, linear_scan_

#: Target number of elements of one (K, N)-sized temporary per slab (4 MiB
#: in fp32): the handful of temporaries of a slab stay in the last-level
#: cache, and slabs are few enough for the per-call overhead not to
#: dominate (2^20 was fastest of 2^18..2^22 on MobileMamba's shapes).
SLAB_ELEMENTS = 1 << 20

Slab = Tuple[slice, slice, slice]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _slabs(batch: int, groups: int, group_dim: int,
           row_elems: int) -> Iterator[Slab]:
    """(batch, group, channel) index ranges covering the problem."""
    rows = max(1, SLAB_ELEMENTS // max(row_elems, 1))
    per_sample = groups * group_dim
    if rows >= per_sample:
        step = rows // per_sample
        for b in range(0, batch, step):
            yield slice(b, b + step), slice(None), slice(None)
    elif rows >= group_dim:
        step = rows // group_dim
        for b in range(batch):
            for g in range(0, groups, step):
                yield slice(b, b + 1), slice(g, g + step), slice(None)
    else:
        for b in range(batch):
            for g in range(groups):
                for d in range(0, group_dim, rows):
                    yield slice(b, b + 1), slice(g, g + 1), slice(d, d + rows)


class _Scratch:
    """Named buffers reused by every slab, and kept between calls.

    ``scratch(name, shape)`` returns a contiguous ``shape`` view of the
    buffer ``name``, growing it when a slab needs more. Two names are never
    the same memory, so a caller only has to keep one name per live value.
    Buffers are kept for the next call (per thread, dtype and device), as a
    cuDNN workspace is: the first touch of fresh memory costs page faults
    that took longer than the arithmetic on it. Only buffers up to
    :data:`KEEP_BYTES` are kept; :func:`workspace_bytes` reports the total.
    """

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, device
        self.buffers: Dict[str, torch.Tensor] = {}
        # (name, shape) -> the view last handed out: slicing and viewing
        # again would cost more than the op on a small slab.
        self.views: Dict[Tuple[str, Tuple[int, ...]], torch.Tensor] = {}

    def __call__(self, name: str, shape) -> torch.Tensor:
        shape = tuple(shape)
        view = self.views.get((name, shape))
        if view is not None:
            return view
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel:
            # views of the old, smaller buffer must not be handed out again
            self.views = {k: v for k, v in self.views.items() if k[0] != name}
            buf = torch.empty(numel, dtype=self.dtype, device=self.device)
            if numel * buf.element_size() > KEEP_BYTES:
                self.buffers.pop(name, None)
                return buf.view(shape)
            self.buffers[name] = buf
        if len(self.views) >= 256:  # many input sizes: start over
            self.views = {}
        view = self.views[(name, shape)] = buf[:numel].view(shape)
        return view

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size()
                   for b in self.buffers.values())


#: Largest scratch buffer kept between calls (a slab's temporaries are at
#: most SLAB_ELEMENTS * K * N elements, 8 MiB for MobileMamba).
KEEP_BYTES = 16 << 20
_THREAD_SCRATCH = threading.local()


def _scratch_for(dtype: torch.dtype, device: torch.device) -> _Scratch:
    """This thread's scratch for ``dtype`` on ``device``. (The kernels run
    inside the scan operator or in eager inference, never under a tracer
    that would record these buffers.)"""
    cache = getattr(_THREAD_SCRATCH, 'cache', None)
    if cache is None:
        cache = _THREAD_SCRATCH.cache = {}
    key = (dtype, str(device))
    if key not in cache:
        cache[key] = _Scratch(dtype, device)
    return cache[key]


def workspace_bytes() -> int:
    """Bytes of scratch the ``'torch'`` backend keeps in this thread."""
    cache = getattr(_THREAD_SCRATCH, 'cache', {})
    return sum(s.nbytes() for s in cache.values())


def release_workspace() -> None:
    """Free the scratch kept by this thread (it is re-created on demand)."""
    _THREAD_SCRATCH.cache = {}


def _softplus(s: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """softplus(s) into ``out`` (which may be ``s``), with PyTorch's kernel.

    Above s = 20 it returns s, off by less than 2e-9. (A sigmoid/log
    composite used before was 1.5-1.8x slower than this kernel on this
    torch build, measured on 64K-2M contiguous elements, 1 and 2 threads.)
    """
    return torch.ops.aten.softplus.out(s, 1, 20, out=out)


class _Problem:
    """Inputs viewed as (batch, K, G, dim/G, N, L), plus what slabs need.

    Args:
        u (Tensor): (batch, dim, L).
        delta (Tensor): (batch, K, dim, L).
        A (Tensor): (K, dim, N).
        B (Tensor): (batch, K, G, N, L).
        C (Tensor): (batch, K, G, N, L).
        D (Tensor, optional): (K, dim).
        z (Tensor, optional): (batch, dim, L).
        delta_bias (Tensor, optional): (K, dim).
        delta_softplus (bool): Apply softplus to delta + delta_bias.
        reverse (Sequence[bool]): Per direction, whether it runs backwards.
    """

    def __init__(self, u, delta, A, B, C, D, z, delta_bias,
                 delta_softplus: bool, reverse: Sequence[bool]) -> None:
        self.acc = acc = _acc_dtype(u.dtype)
        batch, dim, length = u.shape
        k_dirs, groups, n_state = B.shape[1], B.shape[2], A.shape[-1]
        group_dim = dim // groups
        self.shape = (batch, k_dirs, groups, group_dim, n_state, length)
        self.softplus = delta_softplus
        self.reverse = tuple(reverse)
        self.scratch = _scratch_for(acc, u.device)
        # (views that split a dimension; Tensor.unflatten's Python wrapper
        # costs ~3 us a call, which adds up on small problems)
        self.u = u.view(batch, 1, groups, group_dim, 1, length)
        self.delta = delta.view(batch, k_dirs, groups, group_dim, 1, length)
        self.A = A.to(acc).view(1, k_dirs, groups, group_dim, n_state, 1)
        self.B = B.unsqueeze(3)
        self.C = C.unsqueeze(3)
        # Both directions share u, so their skip weights add up.
        self.D = (None if D is None else
                  D.to(acc).sum(0).view(1, groups, group_dim, 1))
        self.bias = (None if delta_bias is None else delta_bias.to(acc).view(
            1, k_dirs, groups, group_dim, 1, 1))
        self.z = None if z is None else z.view(batch, groups, group_dim,
                                                length)

    def slabs(self) -> Iterator[Slab]:
        batch, k_dirs, groups, group_dim, n_state, length = self.shape
        return _slabs(batch, groups, group_dim, k_dirs * n_state * length)

    def slab_u(self, sl: Slab) -> torch.Tensor:
        """u of one slab, (b, 1, g, d, 1, L) in the accumulation dtype."""
        bs, gs, ds = sl
        return self.u[bs, :, gs, ds].to(self.acc)

    def pre_softplus(self, sl: Slab, buffers: Optional[Scratch] = None,
                     out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """s = delta + delta_bias of one slab, (b, K, g, d, 1, L), into
        ``out`` or else into the buffer 'dt' of ``buffers``."""
        bs, gs, ds = sl
        delta = self.delta[bs, :, gs, ds]
        if out is None:
            out = buffers('dt', delta.shape)
        if self.bias is None:
            return out.copy_(delta)
        return torch.add(delta, self.bias[:, :, gs, ds], out=out)

    def states(self, sl: Slab, for_backward: bool = False,
               buffers: Optional[Scratch] = None):
        """Time steps, decays and states h of one slab.

        Args:
            sl (Slab): The slab.
            for_backward (bool): Keep dt and the decays for the backward
                pass; the forward pass instead scans in dt's buffer.
            buffers (callable, optional): Where dt, a and h go,
                ``buffers(name, shape) -> Tensor``. Defaults to the kept
                scratch.

        Returns:
            tuple: u (b, 1, g, d, 1, L); dt (b, K, g, d, 1, L); a and h
            (b, K, g, d, N, L). All in the accumulation dtype; without
            ``for_backward`` dt and a are None. The backward pass recomputes
            s for softplus'(s) in dt's buffer once it is done with dt, so s
            is never kept beside dt.
        """
        bs, gs, ds = sl
        scratch = self.scratch
        buffers = buffers or scratch
        u = self.slab_u(sl)
        dt = self.pre_softplus(sl, buffers)
        if self.softplus:
            _softplus(dt, out=dt)
        A = self.A[:, :, gs, ds]
        # (b, K, g, d, 1, L) with A's (1, K, g, d, N, 1): torch's own
        # broadcast_shapes costs ~0.1 ms a call
        a_shape = dt.shape[:4] + A.shape[4:5] + dt.shape[5:]
        a = torch.mul(dt, A, out=buffers('a', a_shape)).exp_()
        B = self.B[bs, :, gs]
        if for_backward or dt.shape != a_shape:
            x = torch.mul(dt, B, out=buffers('h', a_shape)).mul_(u)
        else:  # dt is scratch the forward pass no longer needs
            x, dt = dt.mul_(u).mul_(B), None
        for k, rev in enumerate(self.reverse):
            linear_scan_(a[:, k], x[:, k], reverse=rev, scratch=scratch)
        if not for_backward:
            return u, None, None, x
        return u, dt, a, x

    def output(self, sl: Slab, h: torch.Tensor, u: torch.Tensor,
               out: torch.Tensor) -> torch.Tensor:
        """y = sum over directions and states of C h, plus D u, into out."""
        bs, gs, ds = sl
        C = self.C[bs, :, gs].to(self.acc)
        if h.shape[4] == 1:  # N = 1: no reduction over states needed
            torch.mul(h[:, 0, ..., 0, :], C[:, 0, ..., 0, :], out=out)
            for k in range(1, h.shape[1]):
                out.addcmul_(h[:, k, ..., 0, :], C[:, k, ..., 0, :])
        else:
            torch.sum(h * C, dim=(1, 4), out=out)
        if self.D is not None:
            out.addcmul_(u[:, 0, ..., 0, :], self.D[:, gs, ds])
        return out


def _forward(prob: _Problem, return_last_state: bool):
    """y and the last state (or None)."""
    batch, k_dirs, groups, group_dim, n_state, length = prob.shape
    acc = prob.acc
    y = torch.empty(batch, groups, group_dim, length, dtype=acc,
                    device=prob.u.device)
    last = (y.new_empty(batch, groups, group_dim, n_state)
            if return_last_state else None)
    for sl in prob.slabs():
        bs, gs, ds = sl
        u, _, _, h = prob.states(sl)
        yv = prob.output(sl, h, u, y[bs, gs, ds])
        if prob.z is not None:
            yv.mul_(F.silu(prob.z[bs, gs, ds].to(acc)))
        if last is not None:
            last[bs, gs, ds] = h[:, 0, ..., -1]
    return y, last


def _backward(prob: _Problem, gy: Optional[torch.Tensor],
              g_last: Optional[torch.Tensor]):
    """Gradients in the internal layout (accumulation dtype); each slab's
    states are recomputed."""
    batch, k_dirs, groups, group_dim, n_state, length = prob.shape
    acc = prob.acc
    dev = prob.u.device
    zeros = lambda *s: torch.zeros(*s, dtype=acc, device=dev)  # noqa: E731
    gu = torch.empty(batch, groups, group_dim, length, dtype=acc, device=dev)
    g_delta = torch.empty(batch, k_dirs, groups, group_dim, 1, length,
                          dtype=acc, device=dev)
    gA = zeros(k_dirs, groups, group_dim, n_state)
    gB = zeros(batch, k_dirs, groups, 1, n_state, length)
    gC = zeros(batch, k_dirs, groups, 1, n_state, length)
    gD = zeros(groups, group_dim) if prob.D is not None else None
    g_bias = zeros(k_dirs, groups, group_dim) if prob.bias is not None \
        else None
    gz = (torch.empty(batch, groups, group_dim, length, dtype=acc,
                      device=dev) if prob.z is not None else None)
    if gy is not None:
        gy = gy.unflatten(1, (groups, group_dim))
    if g_last is not None:
        g_last = g_last.unflatten(1, (groups, group_dim))

    for sl in prob.slabs():
        bs, gs, ds = sl
        u, dt, a, h = prob.states(sl, for_backward=True)
        u4 = u[:, 0, ..., 0, :]
        gyp = (gy[bs, gs, ds].to(acc) if gy is not None else
               torch.zeros_like(u4))
        if prob.z is not None:
            y_pre = prob.output(sl, h, u, torch.empty_like(gyp))
            z = prob.z[bs, gs, ds].to(acc)
            sig = torch.sigmoid(z)
            # d silu(z) / dz = sig * (1 + z * (1 - sig))
            gz[bs, gs, ds] = gyp * y_pre * sig * (1 + z * (1 - sig))
            gyp = gyp * z * sig
        gu_v = gu[bs, gs, ds]
        if gD is not None:
            gD[gs, ds] += (gyp * u4).sum((0, 3))
            torch.mul(gyp, prob.D[:, gs, ds], out=gu_v)
        else:
            gu_v.zero_()
        gyp6 = gyp[:, None, :, :, None]
        lam = prob.scratch('lam', h.shape)
        gC[bs, :, gs] += torch.mul(h, gyp6, out=lam).sum(3, keepdim=True)
        C = prob.C[bs, :, gs]
        torch.mul(gyp6, C, out=lam)  # dL/dh from the output
        if g_last is not None:
            lam[:, 0, ..., -1] += g_last[bs, gs, ds].to(acc)
        # Adjoint: lam_t = g_t + a_{t+1} lam_{t+1}. With mu_t = a_t lam_t it
        # is the plain scan mu_t = a_t g_t + a_t mu_{t+1}, run backwards.
        mu = torch.mul(a, lam, out=prob.scratch('mu', a.shape))
        for k, rev in enumerate(prob.reverse):
            linear_scan_(a[:, k], mu[:, k], reverse=not rev,
                         scratch=prob.scratch)
            nxt, cur = ((slice(None, -1), slice(1, None)) if rev else
                        (slice(1, None), slice(None, -1)))
            lam[:, k, ..., cur] += mu[:, k, ..., nxt]
            # mu_t h_{t-1} = lam_t dh_t/da_t * a_t: the decay's gradient.
            mu[:, k, ..., nxt].mul_(h[:, k, ..., cur])
            mu[:, k, ..., 0 if not rev else -1] = 0
        # h is no longer needed: its buffer holds lam * dt * u.
        gB[bs, :, gs] += torch.mul(lam, dt, out=h).mul_(u).sum(
            3, keepdim=True)
        lam_b = lam.mul_(prob.B[bs, :, gs])
        if n_state > 1:
            lam_b = lam_b.sum(4, keepdim=True)
        for k in range(k_dirs):
            gu_v.addcmul_(lam_b[:, k, ..., 0, :], dt[:, k, ..., 0, :])
        gA[:, gs, ds] += torch.mul(mu, dt, out=a).sum((0, 5))
        g_dt = g_delta[bs, :, gs, ds]
        torch.mul(lam_b, u, out=g_dt)
        if n_state > 1:
            g_dt += torch.mul(mu, prob.A[:, :, gs, ds], out=a).sum(
                4, keepdim=True)
        else:
            g_dt.addcmul_(mu, prob.A[:, :, gs, ds])
        if prob.softplus:  # softplus'(s) = sigmoid(s), in dt's buffer
            g_dt.mul_(prob.pre_softplus(sl, out=dt).sigmoid_())
        if g_bias is not None:
            g_bias[:, gs, ds] += g_dt.sum((0, 4, 5))
    return gu, g_delta, gA, gB, gC, gD, gz, g_bias


def _cast(grad: Optional[torch.Tensor], like: Optional[torch.Tensor]):
    if grad is None or like is None:
        return None
    return grad.reshape(like.shape).to(like.dtype)


def _reverse_flags(k_dirs: int) -> Tuple[bool, ...]:
    return tuple(k % 2 == 1 for k in range(k_dirs))


def forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
            return_last_state: bool):
    """y and direction 0's last state (or None) in u's dtype."""
    prob = _Problem(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                    _reverse_flags(delta.shape[1]))
    y, last = _forward(prob, return_last_state)
    y = y.flatten(1, 2).to(u.dtype)
    return y, (None if last is None else last.flatten(1, 2).to(u.dtype))


def backward(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
             delta_softplus: bool):
    """Gradients of every input (None for absent inputs), recomputing the
    states slab by slab."""
    prob = _Problem(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                    _reverse_flags(delta.shape[1]))
    gu, g_delta, gA, gB, gC, gD, gz, g_bias = _backward(prob, gy, g_last)
    if gD is not None:  # every direction's D gets the summed skip's grad
        gD = gD.flatten().expand(D.shape[0], -1).contiguous()
    return (_cast(gu, u), _cast(g_delta, delta), _cast(gA, A), _cast(gB, B),
            _cast(gC, C), _cast(gD, D), _cast(gz, z), _cast(g_bias,
                                                           delta_bias))
