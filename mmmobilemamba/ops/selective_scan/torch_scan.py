"""The ``'torch'`` backend: a fast selective scan in plain PyTorch ops.

Forward and backward are one :class:`torch.autograd.Function` each for the
one-direction scan (:class:`SelectiveScanFn`) and for SS2D's two-direction
scan (:class:`BidirectionalSelectiveScanFn`). Both directions of the latter
are computed by the same tensor ops: u is broadcast to them (never flipped
or copied) and direction 1 is scanned backwards in time by
:func:`.linear_recurrence.linear_scan_`, so its inputs and outputs stay in
raster order. The backward pass recomputes the states and runs the adjoint
recurrence, which is the same scan in the opposite time direction.

How it is made fast on a CPU:

* **Slabs.** The work is split into slabs of (batch, group, channel) rows,
  small enough for a slab's temporaries to stay in the last-level cache. The
  extra memory is a slab's worth, not a multiple of the inputs.
* **Time ahead of channels.** A slab's working tensors are laid out
  (b, K, g, L, d, N) (K directions, G groups of B/C, d = dim / G channels, N
  states), so a scan step is one vectorised call over contiguous channels
  and the number of calls depends on L only. Inputs arrive time-last; each
  slab is transposed once on the way in and once on the way out, by
  PyTorch's cache-blocked 2-D transpose.
* **Scratch reuse.** Every slab-sized temporary is a view of a buffer
  allocated once per call (:class:`_Scratch`) and written with ``out=``:
  fresh allocations per slab cost page faults that took more time than the
  arithmetic.
* **Cheap transcendentals.** softplus is computed through sigmoid and log,
  which PyTorch vectorises on CPU, instead of its log1p-based kernel.

Accumulation is in fp32 (fp64 for fp64 inputs); y is returned in u's dtype
and every gradient in its input's dtype.
"""
import itertools
import math
import threading
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .linear_recurrence import linear_scan_

#: Target number of elements of one (K, N)-sized temporary per slab (2 MiB
#: in fp32): the dozen temporaries of a slab stay in the last-level cache,
#: and slabs are few enough for the per-call overhead not to dominate.
SLAB_ELEMENTS = 1 << 19
#: Smallest 2-D block worth PyTorch's blocked transpose kernel.
_MIN_BLOCK = 60 * 60
#: Time axis of a slab's working tensors, laid out (b, K, g, L, d, N).
_TIME = 3

Slab = Tuple[slice, slice, slice]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _slabs(batch: int, groups: int, group_dim: int, row_elems: int,
           exporting: bool) -> Iterator[Slab]:
    """(batch, group, channel) index ranges covering the problem."""
    if exporting:  # one slab: the exported graph should not unroll slabs
        yield slice(None), slice(None), slice(None)
        return
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
        # Equal parts, so no slab is a sliver.
        parts = -(-group_dim // rows)
        step = -(-group_dim // parts)
        for b in range(batch):
            for g in range(groups):
                for d in range(0, group_dim, step):
                    yield slice(b, b + 1), slice(g, g + 1), slice(d, d + step)


def _is_exporting() -> bool:
    onnx_export = getattr(torch.onnx, 'is_in_onnx_export', lambda: False)
    compiler = getattr(torch, 'compiler', None)
    exporting = getattr(compiler, 'is_exporting', lambda: False)
    return bool(onnx_export() or exporting())


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

    def __call__(self, name: str, shape) -> torch.Tensor:
        shape = tuple(shape)
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=self.dtype, device=self.device)
            if numel * buf.element_size() <= KEEP_BYTES:
                self.buffers[name] = buf
            else:
                self.buffers.pop(name, None)
        return buf[:numel].view(shape)

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size()
                   for b in self.buffers.values())


#: Largest scratch buffer kept between calls (a slab's temporaries are at
#: most SLAB_ELEMENTS * K * N elements, 4 MiB for MobileMamba).
KEEP_BYTES = 16 << 20
_THREAD_SCRATCH = threading.local()


def _scratch_for(dtype: torch.dtype, device: torch.device) -> _Scratch:
    """This thread's scratch for ``dtype`` on ``device`` (a fresh one while
    tracing or exporting: a tracer must see every buffer created)."""
    if torch.jit.is_tracing() or _is_exporting():
        return _Scratch(dtype, device)
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


def _softplus(s: torch.Tensor, out: torch.Tensor,
              tmp: torch.Tensor) -> torch.Tensor:
    """softplus(s) into ``out``, as max(s, 0) - log(sigmoid(|s|)).

    Equal to log(1 + exp(s)) for every s without overflow; sigmoid and log
    are vectorised on CPU where PyTorch's log1p-based softplus is not
    (about 3x faster). Absolute error below 1e-7 in fp32. ``out`` may be
    ``s``; ``tmp`` is scratch of the same shape.
    """
    torch.abs(s, out=tmp).sigmoid_().log_()
    return torch.clamp(s, min=0, out=out).sub_(tmp)


def _time_first(t: torch.Tensor, k: int) -> torch.Tensor:
    """Direction k of a working tensor as a time-first view (L, b, g, d, N),
    the layout :func:`linear_scan_` steps through."""
    return t.select(1, k).movedim(_TIME - 1, 0)


def _blocks(t: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 2-D (last two dims) blocks of ``t``, one view each."""
    for index in itertools.product(*map(range, t.shape[:-2])):
        yield t[index]


def _transpose_copy(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst.copy_(src.transpose(-1, -2))``, block by block where PyTorch
    has a cache-blocked kernel for it (about 4x faster than a strided copy):
    contiguous 2-D blocks on both sides, same dtype."""
    srct = src.transpose(-1, -2)
    rows, cols = dst.shape[-2:]
    fast = (dst.dtype == src.dtype and rows * cols >= _MIN_BLOCK
            and dst.stride(-1) == 1 and dst.stride(-2) == cols
            and src.stride(-1) == 1 and src.stride(-2) == rows)
    if not fast or _is_exporting():
        return dst.copy_(srct)
    for d_blk, s_blk in zip(_blocks(dst), _blocks(srct)):
        d_blk.copy_(s_blk)
    return dst


class _Problem:
    """Inputs split into groups, plus what slabs need.

    Stored in the callers' layout (time last); a slab's working tensors are
    (b, K, g, L, d, N), in the call's :class:`_Scratch`.

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
        split = (groups, group_dim)
        self.u = u.unflatten(1, split)[:, None]  # (b, 1, g, d, L)
        self.delta = delta.unflatten(2, split)  # (b, K, g, d, L)
        # Parameters broadcast against (b, K, g, L, d, N).
        self.A = A.to(acc).unflatten(1, split)[:, :, None]  # (K, g, 1, d, N)
        self.B, self.C = B, C  # (b, K, g, N, L)
        # Both directions share u, so their skip weights add up.
        self.D = (None if D is None else
                  D.to(acc).sum(0).view(groups, 1, group_dim))
        self.bias = (None if delta_bias is None else
                     delta_bias.to(acc).unflatten(1, split)[:, :, None])
        self.z = None if z is None else z.unflatten(1, split)[:, None]

    def slabs(self) -> Iterator[Slab]:
        batch, k_dirs, groups, group_dim, n_state, length = self.shape
        return _slabs(batch, groups, group_dim, k_dirs * n_state * length,
                      _is_exporting())

    def load(self, t: torch.Tensor, name: str) -> torch.Tensor:
        """A slab of a time-last input, (..., d, L), as a contiguous
        (..., L, d) scratch tensor in the accumulation dtype."""
        out = self.scratch(name, t.shape[:-2] + (t.shape[-1], t.shape[-2]))
        return _transpose_copy(out, t)

    def bc(self, t: torch.Tensor, sl: Slab) -> torch.Tensor:
        """B or C of a slab as a (b, K, g, L, 1, N) view."""
        bs, gs, _ = sl
        return t[bs, :, gs].transpose(-1, -2).unsqueeze(4)

    def states(self, sl: Slab, for_backward: bool = False):
        """Time steps, decays and states h of one slab.

        Args:
            sl (Slab): The slab.
            for_backward (bool): Keep what the backward pass needs; the
                forward pass instead works in place where it can.

        Returns:
            tuple: u (b, 1, g, L, d); dt (b, K, g, L, d); the pre-softplus
            s (same shape, or None without softplus); a and h
            (b, K, g, L, d, N). All scratch tensors in the accumulation
            dtype; without ``for_backward`` only u and h are returned
            (others None).
        """
        bs, gs, ds = sl
        scratch = self.scratch
        u = self.load(self.u[bs, :, gs, ds], 'u')
        s = self.load(self.delta[bs, :, gs, ds], 's')
        if self.bias is not None:
            s += self.bias[:, gs, :, ds]
        shape = s.shape + (self.shape[4], )
        a = scratch('a', shape)
        if not self.softplus:
            dt = s
        else:  # a's buffer is free until the decays are computed
            dt = _softplus(s, scratch('dt', s.shape) if for_backward else s,
                           a.view(-1)[:s.numel()].view(s.shape))
        torch.mul(dt.unsqueeze(-1), self.A[:, gs, :, ds], out=a).exp_()
        B = self.bc(self.B, sl)
        if for_backward:
            x = torch.mul(dt, u, out=scratch('h', shape)[..., 0])
            x = x.unsqueeze(-1).mul(B) if shape[-1] > 1 else \
                x.mul_(B[..., 0]).unsqueeze(-1)
        else:  # dt is scratch the forward pass no longer needs
            dtu, dt = dt.mul_(u), None
            x = (dtu.unsqueeze(-1) * B if shape[-1] > 1 else
                 dtu.mul_(B[..., 0]).unsqueeze(-1))
        work = scratch('work', x[:, 0].shape)
        for k, rev in enumerate(self.reverse):
            linear_scan_(_time_first(a, k), _time_first(x, k), rev, work)
        if not for_backward:
            return u, None, None, None, x
        return u, dt, s if self.softplus else None, a, x

    def output(self, sl: Slab, h: torch.Tensor, u: torch.Tensor,
               out: torch.Tensor) -> torch.Tensor:
        """y = sum over directions and states of C h, plus D u, into out
        (b, g, L, d)."""
        _, gs, ds = sl
        C = self.bc(self.C, sl)  # (b, K, g, L, 1, N)
        if h.shape[-1] == 1:  # N = 1: no reduction over states needed
            torch.mul(h[:, 0, ..., 0], C[:, 0, ..., 0], out=out)
            for k in range(1, h.shape[1]):
                out.addcmul_(h[:, k, ..., 0], C[:, k, ..., 0])
        else:
            torch.sum(h * C, dim=(1, 5), out=out)
        if self.D is not None:
            out.addcmul_(u[:, 0], self.D[gs, :, ds])
        return out


def _forward(prob: _Problem, return_last_state: bool):
    batch, k_dirs, groups, group_dim, n_state, length = prob.shape
    acc = prob.acc
    y = torch.empty(batch, groups, group_dim, length, dtype=acc,
                    device=prob.u.device)
    last = (y.new_empty(batch, groups, group_dim, n_state)
            if return_last_state else None)
    for sl in prob.slabs():
        bs, gs, ds = sl
        u, _, _, _, h = prob.states(sl)
        yv = prob.output(sl, h, u, prob.scratch('y', u[:, 0].shape))
        if prob.z is not None:
            z = prob.load(prob.z[bs, 0, gs, ds], 'z')
            yv.mul_(F.silu(z, inplace=True))
        _transpose_copy(y[bs, gs, ds], yv)
        if last is not None:
            last[bs, gs, ds] = h[:, 0, :, -1]
    return y, last


def _backward(prob: _Problem, gy: Optional[torch.Tensor],
              g_last: Optional[torch.Tensor]):
    """Gradients in the internal layout (accumulation dtype)."""
    batch, k_dirs, groups, group_dim, n_state, length = prob.shape
    acc = prob.acc
    dev = prob.u.device
    scratch = prob.scratch
    zeros = lambda *s: torch.zeros(*s, dtype=acc, device=dev)  # noqa: E731
    gu = torch.empty(batch, groups, group_dim, length, dtype=acc, device=dev)
    g_delta = torch.empty(batch, k_dirs, groups, group_dim, length,
                          dtype=acc, device=dev)
    gA = zeros(k_dirs, groups, group_dim, n_state)
    gB = zeros(batch, k_dirs, groups, n_state, length)
    gC = zeros(batch, k_dirs, groups, n_state, length)
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
        u, dt, s, a, h = prob.states(sl, for_backward=True)
        u0 = u[:, 0]
        if gy is not None:
            gyp = prob.load(gy[bs, gs, ds], 'gy')  # (b, g, L, d)
        else:
            gyp = scratch('gy', u0.shape).zero_()
        if prob.z is not None:
            y_pre = prob.output(sl, h, u, scratch('y', gyp.shape))
            z = prob.load(prob.z[bs, 0, gs, ds], 'z')
            sig = torch.sigmoid(z)
            # d silu(z) / dz = sig * (1 + z * (1 - sig))
            _transpose_copy(gz[bs, gs, ds],
                            gyp * y_pre * sig * (1 + z * (1 - sig)))
            gyp.mul_(z.mul_(sig))
        gu_v = scratch('gu', gyp.shape)
        if gD is not None:
            gD[gs, ds] += torch.mul(gyp, u0, out=gu_v).sum((0, 2))
            torch.mul(gyp, prob.D[gs, :, ds], out=gu_v)
        else:
            gu_v.zero_()
        gyp6 = gyp[:, None, ..., None]  # (b, 1, g, L, d, 1)
        lam = scratch('lam', a.shape)
        gC[bs, :, gs].transpose(-1, -2).add_(
            torch.mul(h, gyp6, out=lam).sum(4))
        torch.mul(gyp6, prob.bc(prob.C, sl), out=lam)  # dL/dh from y
        if g_last is not None:
            lam[:, 0, :, -1] += g_last[bs, gs, ds].to(acc)
        # Adjoint: lam_t = g_t + a_{t+1} lam_{t+1}. With mu_t = a_t lam_t it
        # is the plain scan mu_t = a_t g_t + a_t mu_{t+1}, run backwards.
        mu = torch.mul(a, lam, out=scratch('mu', a.shape))
        work = scratch('work', mu[:, 0].shape)
        for k, rev in enumerate(prob.reverse):
            a_k, mu_k = _time_first(a, k), _time_first(mu, k)
            lam_k, h_k = _time_first(lam, k), _time_first(h, k)
            linear_scan_(a_k, mu_k, not rev, work)
            nxt, cur = ((slice(None, -1), slice(1, None)) if rev else
                        (slice(1, None), slice(None, -1)))
            lam_k[cur] += mu_k[nxt]
            # mu_t h_{t-1} = lam_t dh_t/da_t * a_t: the decay's gradient.
            mu_k[nxt].mul_(h_k[cur])
            mu_k[0 if not rev else -1] = 0
        # h is no longer needed: its buffer holds lam * dt * u.
        lam_dtu = torch.mul(lam, dt.unsqueeze(-1), out=h).mul_(
            u.unsqueeze(-1))
        gB[bs, :, gs].transpose(-1, -2).add_(lam_dtu.sum(4))
        lam_b = lam.mul_(prob.bc(prob.B, sl))
        lam_b = lam_b[..., 0] if n_state == 1 else lam_b.sum(5)
        for k in range(k_dirs):
            gu_v.addcmul_(lam_b[:, k], dt[:, k])
        _transpose_copy(gu[bs, gs, ds], gu_v)
        gA[:, gs, ds] += torch.mul(mu, dt.unsqueeze(-1),
                                   out=a).sum((0, _TIME))
        g_dt = lam_b.mul_(u)
        A = prob.A[:, gs, :, ds]
        if n_state > 1:
            g_dt += torch.mul(mu, A, out=a).sum(5)
        else:
            g_dt.addcmul_(mu[..., 0], A[..., 0])
        if s is not None:
            g_dt.mul_(s.sigmoid_())  # softplus'(s) = sigmoid(s)
        if g_bias is not None:
            g_bias[:, gs, ds] += g_dt.sum((0, _TIME))
        _transpose_copy(g_delta[bs, :, gs, ds], g_dt)
    return gu, g_delta, gA, gB, gC, gD, gz, g_bias


def _cast(grad: Optional[torch.Tensor], like: Optional[torch.Tensor]):
    if grad is None or like is None:
        return None
    return grad.reshape(like.shape).to(like.dtype)


class _ScanFnBase(torch.autograd.Function):
    """Shared forward/backward; subclasses fix the argument layout."""

    @staticmethod
    def _problem(u, delta, A, B, C, D, z, delta_bias, delta_softplus
                 ) -> _Problem:
        raise NotImplementedError

    @classmethod
    def _run_forward(cls, ctx, u, delta, A, B, C, D, z, delta_bias,
                     delta_softplus, return_last_state):
        ctx.set_materialize_grads(False)
        ctx.delta_softplus = delta_softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        prob = cls._problem(u, delta, A, B, C, D, z, delta_bias,
                            delta_softplus)
        y, last = _forward(prob, return_last_state)
        y = y.flatten(1, 2).to(u.dtype)
        if last is None:
            return y
        return y, last.flatten(1, 2).to(u.dtype)

    @classmethod
    def _run_backward(cls, ctx, gy, g_last):
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        prob = cls._problem(u, delta, A, B, C, D, z, delta_bias,
                            ctx.delta_softplus)
        grads = _backward(prob, gy, g_last)
        gu, g_delta, gA, gB, gC, gD, gz, g_bias = grads
        if gD is not None:  # both directions' D get the same gradient
            gD = gD.flatten().repeat(prob.shape[1])
        if g_bias is not None:
            g_bias = g_bias.flatten()
        return (_cast(gu, u), _cast(g_delta, delta), _cast(gA, A),
                _cast(gB, B), _cast(gC, C), _cast(gD, D), _cast(gz, z),
                _cast(g_bias, delta_bias))


class SelectiveScanFn(_ScanFnBase):
    """One-direction selective scan; arguments as :func:`selective_scan`."""

    @staticmethod
    def _problem(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        if B.dim() == 3:
            B, C = B[:, None], C[:, None]
        lift = lambda t: None if t is None else t[None]  # noqa: E731
        return _Problem(u, delta[:, None], A[None], B[:, None], C[:, None],
                        lift(D), z, lift(delta_bias), delta_softplus,
                        reverse=(False, ))

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                return_last_state):
        return SelectiveScanFn._run_forward(ctx, u, delta, A, B, C, D, z,
                                            delta_bias, delta_softplus,
                                            return_last_state)

    @staticmethod
    def backward(ctx, gy, g_last=None):
        return SelectiveScanFn._run_backward(ctx, gy, g_last) + (None, None)


class BidirectionalSelectiveScanFn(_ScanFnBase):
    """SS2D's two-direction scan; arguments as
    :func:`selective_scan_bidirectional` (direction 1 runs backwards)."""

    @staticmethod
    def _problem(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        dim = u.shape[1]
        per_dir = lambda t: None if t is None else t.view(2, dim)  # noqa
        return _Problem(u, delta, A.view(2, dim, A.shape[-1]), B[:, :, None],
                        C[:, :, None], per_dir(D), None, per_dir(delta_bias),
                        delta_softplus, reverse=(False, True))

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus):
        return BidirectionalSelectiveScanFn._run_forward(
            ctx, u, delta, A, B, C, D, None, delta_bias, delta_softplus,
            False)

    @staticmethod
    def backward(ctx, gy):
        grads = BidirectionalSelectiveScanFn._run_backward(ctx, gy, None)
        gu, g_delta, gA, gB, gC, gD, _, g_bias = grads
        return gu, g_delta, gA, gB, gC, gD, g_bias, None


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                         delta_softplus=False, return_last_state=False):
    """The ``'torch'`` backend of :func:`selective_scan`."""
    return SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias,
                                 delta_softplus, return_last_state)


def selective_scan_bidirectional_torch(u, delta, A, B, C, D=None,
                                       delta_bias=None, delta_softplus=True):
    """The ``'torch'`` backend of :func:`selective_scan_bidirectional`."""
    return BidirectionalSelectiveScanFn.apply(u, delta, A, B, C, D,
                                              delta_bias, delta_softplus)
