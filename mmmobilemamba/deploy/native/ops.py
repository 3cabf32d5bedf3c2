"""``mmmobilemamba::selective_scan_native``: SS2D's scan as one operator
that the runtime kernel libraries implement.

The native deploy targets (``'onnx-native'``, ``'xnnpack-native'``) record
this operator where the portable targets record the doubling scan's
standard operators. It is the forward of SS2D's scan only (inference): two
directions (the second runs backwards), one group of B and C, softplus on
``delta + bias``, D summed over the directions, fp32. The runtime kernels
(``ops/csrc/scan_native.h``) and this eager implementation share the C++
kernels of the ``'cpp'`` scan row; without the compiled extension, eager
calls fall back to the reference loop.

Layouts: u (b, d, L); delta (b, K, d, L); A (K, d, N); B, C (b, K, N, L);
D, bias (K, d) -> y (b, d, L).

The ``.out`` overload (``selective_scan_native.out``) is what ExecuTorch's
memory planning turns the functional call into, and the name the
ExecuTorch kernel library registers.
"""
import torch
from torch import Tensor

from mmmobilemamba.ops.scan import cpu, reference

#: The operator's qualified name in torch, and its ONNX domain / type.
OP_NAME = 'mmmobilemamba::selective_scan_native'
ONNX_DOMAIN = 'mmmobilemamba'
ONNX_OP_TYPE = 'SelectiveScan'

_lib = torch.library.Library('mmmobilemamba', 'FRAGMENT')
_lib.define('selective_scan_native(Tensor u, Tensor delta, Tensor A, '
            'Tensor B, Tensor C, Tensor D, Tensor bias) -> Tensor')
_lib.define('selective_scan_native.out(Tensor u, Tensor delta, Tensor A, '
            'Tensor B, Tensor C, Tensor D, Tensor bias, *, '
            'Tensor(a!) out) -> Tensor(a!)')


def check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                 D: Tensor, bias: Tensor) -> None:
    """A ValueError naming the input whose shape or dtype does not fit."""
    if u.dim() != 3:
        raise ValueError(f'selective_scan_native: u must be (b, d, L), got '
                         f'{tuple(u.shape)}')
    b, d, length = u.shape
    k, n = delta.shape[1] if delta.dim() == 4 else -1, A.shape[-1]
    expected = {
        'delta': (delta, (b, k, d, length)),
        'A': (A, (k, d, n)),
        'B': (B, (b, k, n, length)),
        'C': (C, (b, k, n, length)),
        'D': (D, (k, d)),
        'bias': (bias, (k, d)),
    }
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(f'selective_scan_native: {name} must be '
                             f'{shape} for u {tuple(u.shape)}, got '
                             f'{tuple(t.shape)}')
    for name, t in (('u', u), *((k_, v[0]) for k_, v in expected.items())):
        if t.dtype != torch.float32:
            raise ValueError(f'selective_scan_native: {name} must be '
                             f'float32, got {t.dtype}')


def scan_native(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                D: Tensor, bias: Tensor) -> Tensor:
    """The operator's eager computation (the compiled kernels, or the
    reference loop where they are not built)."""
    check_inputs(u, delta, A, B, C, D, bias)
    args = (u.contiguous(), delta.contiguous(), A, B.unsqueeze(2),
            C.unsqueeze(2), D, None, bias, True, False)
    if cpu.status(u.device) is True:
        return cpu.forward(*args)[0]
    return reference.scan(*args)[0]


@torch.library.impl(_lib, 'selective_scan_native', 'CompositeExplicitAutograd')
def _functional(u, delta, A, B, C, D, bias):
    return scan_native(u, delta, A, B, C, D, bias)


@torch.library.impl(_lib, 'selective_scan_native.out',
                    'CompositeExplicitAutograd')
def _out(u, delta, A, B, C, D, bias, *, out):
    out.copy_(scan_native(u, delta, A, B, C, D, bias))
    return out


@torch.library.register_fake(OP_NAME)
def _fake(u, delta, A, B, C, D, bias):
    return torch.empty_like(u, memory_format=torch.contiguous_format)


@torch.library.register_fake(OP_NAME + '.out')
def _fake_out(u, delta, A, B, C, D, bias, *, out):
    return out


def selective_scan_native(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                          C: Tensor, D: Tensor, bias: Tensor) -> Tensor:
    """Call the operator (one node in traced graphs)."""
    return torch.ops.mmmobilemamba.selective_scan_native(
        u, delta, A, B, C, D, bias)
