"""Public selective-scan API: argument checks and backend dispatch.

``selective_scan`` follows the positional signature, shapes and meaning of
mamba_ssm's ``selective_scan_fn`` so that users who know it can drop it in.
``selective_scan_bidirectional`` is the two-direction form SS2D uses.

The backends and how the default is chosen are listed in one table,
:mod:`.backends`; an unknown, unavailable or unsupported choice raises.
"""
from typing import Optional, Tuple, Union

import torch

from .backends import backend_table, resolve
from .fallback import run_with_fallback

ScanResult = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _can_inspect_values() -> bool:
    """False while tracing, compiling or exporting: reading a tensor's
    value there would bake it into the graph or break the trace."""
    compiler = getattr(torch, 'compiler', None)
    compiling = getattr(compiler, 'is_compiling', lambda: False)()
    return not (torch.jit.is_tracing() or compiling)


def _check_args(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f'u must be (batch, dim, L), got shape {tuple(u.shape)}')
    batch, dim, length = u.shape
    if u.dtype not in _FLOAT_DTYPES:
        raise TypeError(f'u must be a floating tensor, got {u.dtype}')
    if delta.shape != u.shape:
        raise ValueError(f'delta must have the shape of u {tuple(u.shape)}, '
                         f'got {tuple(delta.shape)}')
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f'A must be (dim={dim}, N), got {tuple(A.shape)}')
    n_state = A.shape[1]
    for name, t in (('B', B), ('C', C)):
        if t.dim() == 3:
            expected = (batch, n_state, length)
        elif t.dim() == 4:
            groups = t.shape[1]
            if groups == 0 or dim % groups:
                raise ValueError(f'{name} has {groups} groups, which does not '
                                 f'divide dim={dim}')
            expected = (batch, groups, n_state, length)
        else:
            expected = None
        if expected is None or tuple(t.shape) != expected:
            raise ValueError(f'{name} must be (batch, N, L) = '
                             f'{(batch, n_state, length)} or (batch, G, N, L), '
                             f'got {tuple(t.shape)}')
    if D is not None and tuple(D.shape) != (dim, ):
        raise ValueError(f'D must be (dim={dim},), got {tuple(D.shape)}')
    if delta_bias is not None and tuple(delta_bias.shape) != (dim, ):
        raise ValueError(f'delta_bias must be (dim={dim},), '
                         f'got {tuple(delta_bias.shape)}')
    if z is not None and z.shape != u.shape:
        raise ValueError(f'z must have the shape of u {tuple(u.shape)}, '
                         f'got {tuple(z.shape)}')
    if _can_inspect_values() and bool((A > 0).any()):
        raise ValueError('A must be <= 0 (decaying state); got a positive '
                         f'entry, max A = {A.max().item():.4g}')


def selective_scan(u: torch.Tensor,
                   delta: torch.Tensor,
                   A: torch.Tensor,
                   B: torch.Tensor,
                   C: torch.Tensor,
                   D: Optional[torch.Tensor] = None,
                   z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None,
                   delta_softplus: bool = False,
                   return_last_state: bool = False,
                   *,
                   backend: Optional[str] = None) -> ScanResult:
    """Selective scan (S6), per channel with ``h_0 = 0``::

        dt_t = softplus(delta_t + delta_bias) if delta_softplus else delta_t
        h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
        y_t  = C_t . h_t + D * u_t        (then y *= silu(z) if z is given)

    Args:
        u (Tensor): Input, (batch, dim, L).
        delta (Tensor): Time steps before bias/softplus, (batch, dim, L).
        A (Tensor): State matrix, (dim, N); every entry must be <= 0.
        B (Tensor): Input projection, (batch, N, L), or grouped
            (batch, G, N, L) with dim divisible by G (channel d uses group
            d // (dim // G)).
        C (Tensor): Output projection, shaped like B.
        D (Tensor, optional): Skip weight, (dim,). Defaults to None.
        z (Tensor, optional): Gate, (batch, dim, L). Defaults to None.
        delta_bias (Tensor, optional): (dim,). Defaults to None.
        delta_softplus (bool): Apply softplus to delta. Defaults to False.
        return_last_state (bool): Also return h_L, (batch, dim, N).
            Defaults to False.
        backend (str, optional): A name from :mod:`.backends` ('cpp',
            'torch', 'triton', 'ref', 'export'); None picks the fastest
            available for u's device. Defaults to None.

    Returns:
        Tensor | tuple[Tensor, Tensor]: y (batch, dim, L) in u's dtype
        (fp16/bf16 inputs are accumulated in fp32), and h_L if asked for.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    options = tuple(name for name, used in (
        ('return_last_state', return_last_state), ('z', z is not None),
        ('grouped', B.dim() == 4), ('n_state>1', A.shape[1] > 1)) if used)
    record = resolve(backend, u.device, options)
    return _run(record, 'one_direction', backend is not None, u, delta, A, B,
                C, D, z, delta_bias, delta_softplus, return_last_state)


def selective_scan_bidirectional(u: torch.Tensor,
                                 delta: torch.Tensor,
                                 A: torch.Tensor,
                                 B: torch.Tensor,
                                 C: torch.Tensor,
                                 D: Optional[torch.Tensor] = None,
                                 delta_bias: Optional[torch.Tensor] = None,
                                 delta_softplus: bool = True,
                                 *,
                                 backend: Optional[str] = None,
                                 check: bool = True) -> torch.Tensor:
    """The two-direction scan of SS2D, all tensors in raster order.

    Direction 0 scans t = 0 .. L-1, direction 1 scans t = L-1 .. 0 with its
    own parameters; the result is ``y_dir0 + y_dir1`` in raster order, which
    equals ``y0 + reverse(y1)`` where y1 is the scan of the reversed sequence.

    Args:
        u (Tensor): (batch, dim, L), shared by both directions.
        delta (Tensor): (batch, 2, dim, L).
        A (Tensor): (2 * dim, N), direction-major, entries <= 0.
        B (Tensor): (batch, 2, N, L).
        C (Tensor): (batch, 2, N, L).
        D (Tensor, optional): (2 * dim,). Defaults to None.
        delta_bias (Tensor, optional): (2 * dim,). Defaults to None.
        delta_softplus (bool): Defaults to True.
        backend (str, optional): As in :func:`selective_scan`.
        check (bool): Check shapes and A <= 0. False is for callers that
            build the arguments themselves (SS2D: A = -exp(A_logs)); at
            batch 1 the checks cost as much as the compiled scan.
            Defaults to True.

    Returns:
        Tensor: (batch, dim, L) in u's dtype.
    """
    if check:
        _check_bidirectional(u, delta, A, B, C, D, delta_bias)
    options = ('n_state>1', ) if A.shape[1] > 1 else ()
    record = resolve(backend, u.device, options)
    return _run(record, 'two_direction', backend is not None, u, delta, A, B,
                C, D, delta_bias, delta_softplus)


def _check_bidirectional(u, delta, A, B, C, D, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f'u must be (batch, dim, L), got {tuple(u.shape)}')
    batch, dim, length = u.shape
    if tuple(delta.shape) != (batch, 2, dim, length):
        raise ValueError(f'delta must be (batch, 2, dim, L) = '
                         f'{(batch, 2, dim, length)}, got {tuple(delta.shape)}')
    for name, t in (('B', B), ('C', C)):
        if t.dim() != 4 or t.shape[:2] != (batch, 2) or t.shape[3] != length:
            raise ValueError(f'{name} must be (batch, 2, N, L) with batch='
                             f'{batch}, L={length}, got {tuple(t.shape)}')
    per_dir = lambda t: None if t is None else t[:dim]  # noqa: E731
    if A.dim() != 2 or A.shape[0] != 2 * dim:
        raise ValueError(f'A must be (2 * dim = {2 * dim}, N), '
                         f'got {tuple(A.shape)}')
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and tuple(t.shape) != (2 * dim, ):
            raise ValueError(f'{name} must be (2 * dim = {2 * dim},), '
                             f'got {tuple(t.shape)}')
    _check_args(u, delta[:, 0], A[:dim], B[:, 0], C[:, 0], per_dir(D), None,
                per_dir(delta_bias))
    if _can_inspect_values() and bool((A[dim:] > 0).any()):
        raise ValueError('A must be <= 0 (decaying state); direction 1 has a '
                         'positive entry')


def _run(record, form: str, explicit: bool, *args):
    """Call ``record``'s ``form`` ('one_direction' or 'two_direction').
    The Triton kernels run guarded: when they were picked by default and
    fail to compile or launch, the scan warns once and continues on the
    'torch' backend (:mod:`.fallback`); asked for by name, they raise."""
    fn = getattr(record, form)
    if record.name != 'triton':
        return fn(*args)
    fallback = getattr(backend_table()['torch'], form)
    return run_with_fallback(fn, fallback, explicit, *args)
