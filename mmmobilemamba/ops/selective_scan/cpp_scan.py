"""The ``'cpp'`` backend: the compiled CPU kernels (``ops/csrc``).

The extension ``mmmobilemamba.ops._scan_cpu`` is built by ``setup.py`` at
install time. When it is missing (no compiler when the package was
installed, or an installed copy without it) this module still imports:
:func:`cpp_status` gives the reason and the pure-PyTorch backend is the
default instead.

The functions here work in the custom operator's layout (see
:mod:`.scan_op`): delta (b, K, d, L), A (K, d, N), B/C (b, K, G, N, L),
D and delta_bias (K, d); direction k runs backwards in time when k is odd.
"""
from typing import Optional, Tuple, Union

import torch

try:
    from .. import _scan_cpu as _EXT
    _MISSING: Optional[str] = None
except ImportError as e:  # not built: the pure-PyTorch scan is used
    _EXT = None
    _MISSING = (f'the compiled CPU selective scan (mmmobilemamba.ops.'
                f'_scan_cpu) is not built ({e}); build it with '
                '`pip install --no-build-isolation --no-deps -e .`')


def cpp_missing() -> Optional[str]:
    """Why the extension is not importable, or None when it is."""
    return _MISSING


def cpp_status(device: torch.device) -> Union[bool, str]:
    """True if the compiled kernels can run on ``device``, else why not."""
    if _EXT is None:
        return _MISSING
    if device.type != 'cpu':
        return f'the compiled kernels run on CPU tensors (got {device.type})'
    return True


def cpp_isa() -> Optional[str]:
    """The instruction set of the kernel copy in use ('avx512', 'avx2',
    'baseline'), or None when the extension is not built."""
    return None if _EXT is None else _EXT.isa()


# The extension converts dtypes, makes the small tensors contiguous and sums
# D over the directions itself (a Python-side call per tensor costs as much
# as a batch-1 scan), and reads u, delta and z with any strides.


def cpp_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
                return_last_state: bool
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """y (b, d, L) in u's dtype and layout and, if asked for, direction
    0's last state (b, d, N) in u's dtype."""
    y, last = _EXT.scan_fwd(u, delta, A, B, C, D, z, delta_bias,
                            delta_softplus, return_last_state)
    return y, (last.to(u.dtype) if return_last_state else None)


def cpp_backward(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
                 delta_softplus: bool):
    """Gradients of every input in the op's layout (None for absent ones),
    each in its input's dtype."""
    gu, gdelta, gA, gB, gC, gD, gz, gbias = _EXT.scan_bwd(
        gy, g_last, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    cast = lambda g, t: None if t is None else g.to(t.dtype)  # noqa: E731
    if D is not None:  # every direction's D gets the summed skip's gradient
        gD = gD.to(D.dtype).expand(D.shape[0], -1).contiguous()
    return (cast(gu, u), cast(gdelta, delta), cast(gA, A), cast(gB, B),
            cast(gC, C), gD, cast(gz, z), cast(gbias, delta_bias))
