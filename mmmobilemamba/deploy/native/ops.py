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

The ``gated`` overload (ONNX: ``SelectiveScanNormGate``) also runs what
follows the scan in SS2D: a LayerNorm over the d channels at each position
(``norm_weight``, ``norm_bias`` (d,), ``eps``), then ``* silu(z)``, z
(b, d, L). The deploy forms export this one: in the runtimes it replaces
about 15 small nodes per SS2D (transposes, reductions, elementwise).

The ``.out`` overload (``selective_scan_native.out``) is what ExecuTorch's
memory planning turns the functional call into, and the name the
ExecuTorch kernel library registers.
"""
import torch
from torch import Tensor

from mmmobilemamba.ops.scan import cpu, reference

#: The operator's qualified name in torch, and its ONNX domain / types
#: (the plain scan, and the ``gated`` overload).
OP_NAME = 'mmmobilemamba::selective_scan_native'
ONNX_DOMAIN = 'mmmobilemamba'
ONNX_OP_TYPE = 'SelectiveScan'
ONNX_GATED_OP_TYPE = 'SelectiveScanNormGate'

_lib = torch.library.Library('mmmobilemamba', 'FRAGMENT')
_lib.define('selective_scan_native(Tensor u, Tensor delta, Tensor A, '
            'Tensor B, Tensor C, Tensor D, Tensor bias) -> Tensor')
_lib.define('selective_scan_native.out(Tensor u, Tensor delta, Tensor A, '
            'Tensor B, Tensor C, Tensor D, Tensor bias, *, '
            'Tensor(a!) out) -> Tensor(a!)')
_GATED_ARGS = ('Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, '
               'Tensor D, Tensor bias, Tensor z, Tensor norm_weight, '
               'Tensor norm_bias, float eps')
_lib.define(f'selective_scan_native.gated({_GATED_ARGS}) -> Tensor')
_lib.define(f'selective_scan_native.gated_out({_GATED_ARGS}, *, '
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


def check_gate(u: Tensor, z: Tensor, norm_weight: Tensor,
               norm_bias: Tensor, eps: float) -> None:
    """A ValueError naming the epilogue input that does not fit ``u``."""
    d = u.shape[1]
    for name, t, shape in (('z', z, tuple(u.shape)),
                           ('norm_weight', norm_weight, (d, )),
                           ('norm_bias', norm_bias, (d, ))):
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise ValueError(f'selective_scan_native.gated: {name} must be '
                             f'float32 {shape} for u {tuple(u.shape)}, got '
                             f'{t.dtype} {tuple(t.shape)}')
    if not (eps > 0 and eps < float('inf')):
        raise ValueError('selective_scan_native.gated: eps must be a '
                         f'positive finite number, got {eps}')


def norm_gate(y: Tensor, z: Tensor, norm_weight: Tensor, norm_bias: Tensor,
              eps: float) -> Tensor:
    """The gated overload's epilogue in torch: LayerNorm over dim 1 of
    (b, d, L), then ``* silu(z)``."""
    y = torch.nn.functional.layer_norm(y.transpose(1, 2), y.shape[1:2],
                                       norm_weight, norm_bias, eps)
    return y.transpose(1, 2) * torch.nn.functional.silu(z)


def scan_norm_gate_native(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                          C: Tensor, D: Tensor, bias: Tensor, z: Tensor,
                          norm_weight: Tensor, norm_bias: Tensor,
                          eps: float) -> Tensor:
    """The gated overload's eager computation."""
    check_gate(u, z, norm_weight, norm_bias, eps)
    y = scan_native(u, delta, A, B, C, D, bias)
    return norm_gate(y, z, norm_weight, norm_bias, eps).contiguous()


@torch.library.impl(_lib, 'selective_scan_native', 'CompositeExplicitAutograd')
def _functional(u, delta, A, B, C, D, bias):
    return scan_native(u, delta, A, B, C, D, bias)


@torch.library.impl(_lib, 'selective_scan_native.out',
                    'CompositeExplicitAutograd')
def _out(u, delta, A, B, C, D, bias, *, out):
    out.copy_(scan_native(u, delta, A, B, C, D, bias))
    return out


@torch.library.impl(_lib, 'selective_scan_native.gated',
                    'CompositeExplicitAutograd')
def _gated(u, delta, A, B, C, D, bias, z, norm_weight, norm_bias, eps):
    return scan_norm_gate_native(u, delta, A, B, C, D, bias, z, norm_weight,
                                 norm_bias, eps)


@torch.library.impl(_lib, 'selective_scan_native.gated_out',
                    'CompositeExplicitAutograd')
def _gated_out(u, delta, A, B, C, D, bias, z, norm_weight, norm_bias, eps, *,
               out):
    out.copy_(scan_norm_gate_native(u, delta, A, B, C, D, bias, z,
                                    norm_weight, norm_bias, eps))
    return out


@torch.library.register_fake(OP_NAME + '.gated')
def _fake_gated(u, delta, A, B, C, D, bias, z, norm_weight, norm_bias, eps):
    return torch.empty_like(u, memory_format=torch.contiguous_format)


@torch.library.register_fake(OP_NAME + '.gated_out')
def _fake_gated_out(u, delta, A, B, C, D, bias, z, norm_weight, norm_bias,
                    eps, *, out):
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


def selective_scan_norm_gate_native(u: Tensor, delta: Tensor, A: Tensor,
                                    B: Tensor, C: Tensor, D: Tensor,
                                    bias: Tensor, z: Tensor,
                                    norm_weight: Tensor, norm_bias: Tensor,
                                    eps: float) -> Tensor:
    """Call the ``gated`` overload (one node in traced graphs)."""
    return torch.ops.mmmobilemamba.selective_scan_native.gated(
        u, delta, A, B, C, D, bias, z, norm_weight, norm_bias, float(eps))
