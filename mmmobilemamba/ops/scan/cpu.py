"""The ``'cpp'`` row: the compiled CPU kernels (``ops/csrc/scan_*``).

``setup.py`` builds them as ``mmmobilemamba.ops._scan_cpu`` at install
time. When that extension is missing this module still imports, and
:data:`MISSING` says why (the package logs it once). The extension converts
dtypes, makes the small tensors contiguous, sums D over the directions and
reads u, delta and z with any strides itself: at batch 1, each Python-side
call would cost as much as the scan.
"""
from typing import Optional, Union

import torch

try:
    from .. import _scan_cpu as EXT
    MISSING: Optional[str] = None
except ImportError as e:  # not built: the portable scan is used instead
    EXT = None
    MISSING = (f'the compiled CPU selective scan (mmmobilemamba.ops.'
               f'_scan_cpu) is not built ({e}); build it with '
               '`pip install --no-build-isolation --no-deps -e .`')


def status(device: torch.device) -> Union[bool, str]:
    """True if the compiled kernels can run on ``device``, else why not."""
    if EXT is None:
        return MISSING
    if device.type != 'cpu':
        return f'the compiled kernels run on CPU tensors (got {device.type})'
    return True


def isa() -> Optional[str]:
    """The instruction set of the kernel copy in use ('avx512', 'avx2',
    'baseline'; ``MMMOBILEMAMBA_SCAN_ISA`` picks a lower one), or None when
    the extension is not built."""
    return None if EXT is None else EXT.isa()


def forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
            return_last_state):
    """y in u's dtype and layout, and direction 0's last state or None."""
    y, last = EXT.scan_fwd(u, delta, A, B, C, D, z, delta_bias,
                           delta_softplus, return_last_state)
    return y, (last.to(u.dtype) if return_last_state else None)


def backward(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
             delta_softplus):
    """Every input's gradient in its dtype (None for absent inputs)."""
    grads = EXT.scan_bwd(gy, g_last, u, delta, A, B, C, D, z, delta_bias,
                         delta_softplus)
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    grads = [None if t is None else g.to(t.dtype)
             for g, t in zip(grads, inputs)]
    if D is not None:  # every direction's D gets the summed skip's gradient
        grads[5] = grads[5].expand(D.shape[0], -1).contiguous()
    return tuple(grads)
