"""Depthwise convolution on small CPU maps: the compiled inference kernel.

``torch.ops.mmmobilemamba.depthwise_conv2d(input, weight, bias, stride,
padding)`` is built by ``setup.py`` from ``csrc/depthwise_cpu.cpp``
(``mmmobilemamba.ops._dwconv_cpu``) and registered with ``torch.library``
(a fake implementation is registered here). It computes exactly
``F.conv2d(input, weight, bias, stride, padding, groups=C)`` for a float32
CPU input and writes a channels-last result.

:func:`depthwise_conv2d` (and the ``'eager-cpu'`` deploy form) runs the
compiled kernel only where it is measured to win (:func:`use_compiled`, see
docs/benchmarks/speed.md#depthwise) and ``F.conv2d`` everywhere else.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


try:
    from . import _dwconv_cpu  # noqa: F401  (registers the op)
    _MISSING: Optional[str] = None
except ImportError as e:  # not built: F.conv2d everywhere
    _MISSING = (f'the compiled depthwise convolution (mmmobilemamba.ops.'
                f'_dwconv_cpu) is not built ({e}); build it with '
                '`pip install --no-build-isolation --no-deps -e .`')

#: Largest problem (multiply-adds: batch x output pixels x channels x taps)
#: given to the compiled kernel. Below it the kernel beats oneDNN, whose
#: ~30 us of set-up per call dominates small maps; above it oneDNN's
#: blocked kernels win (docs/benchmarks/speed.md#depthwise).
MAX_COMPILED_WORK = 1 << 19
#: Largest kernel side given to the compiled kernel: at 7x7 its per-tap
#: loop loses to oneDNN even on small maps (T2's 28-channel 12x12 map:
#: 49 against 41 us).
MAX_COMPILED_KERNEL = 5

if _MISSING is None:

    @torch.library.register_fake('mmmobilemamba::depthwise_conv2d')
    def _(input, weight, bias, stride, padding):
        b, c, h, w = input.shape
        kh, kw = weight.shape[-2:]
        oh = (h + 2 * padding[0] - kh) // stride[0] + 1
        ow = (w + 2 * padding[1] - kw) // stride[1] + 1
        return input.new_empty((b, c, oh, ow)).contiguous(
            memory_format=torch.channels_last)


def no_grad_needed(*tensors: torch.Tensor) -> bool:
    """Whether no gradient is asked for ``tensors``: the compiled inference
    kernels (this one, the packed products) have no backward."""
    return not (torch.is_grad_enabled()
                and any(t.requires_grad for t in tensors))


def depthwise_missing() -> Optional[str]:
    """Why the compiled kernel is not importable, or None when it is."""
    return _MISSING


def use_compiled(x: torch.Tensor, weight: torch.Tensor,
                 stride: Tuple[int, int], padding: Tuple[int, int],
                 dilation: Tuple[int, int]) -> bool:
    """Whether :func:`depthwise_conv2d` takes the compiled kernel for this
    call: built, float32 on the CPU, no gradient needed, dilation
    1, a kernel side of at most :data:`MAX_COMPILED_KERNEL` and at most
    :data:`MAX_COMPILED_WORK` multiply-adds."""
    if _MISSING is not None or x.device.type != 'cpu' or \
            x.dtype != torch.float32 or weight.dtype != torch.float32 or \
            tuple(dilation) != (1, 1):
        return False
    if not no_grad_needed(x, weight):
        return False
    if x.dim() != 4 or x.shape[1] != weight.shape[0]:
        return False  # F.conv2d names the problem
    kh, kw = weight.shape[-2:]
    if max(kh, kw) > MAX_COMPILED_KERNEL:
        return False
    oh = (x.shape[2] + 2 * padding[0] - kh) // stride[0] + 1
    ow = (x.shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    return x.shape[0] * oh * ow * x.shape[1] * kh * kw <= MAX_COMPILED_WORK


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor,
                     bias: Optional[torch.Tensor], stride: Sequence[int],
                     padding: Sequence[int],
                     dilation: Sequence[int] = (1, 1)) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups=C)``,
    through the compiled kernel where :func:`use_compiled` says so."""
    stride, padding = tuple(stride), tuple(padding)
    if use_compiled(x, weight, stride, padding, tuple(dilation)):
        return torch.ops.mmmobilemamba.depthwise_conv2d(
            x, weight, bias, list(stride), list(padding))
    return F.conv2d(x, weight, bias, stride, padding, dilation,
                    groups=x.shape[1])
