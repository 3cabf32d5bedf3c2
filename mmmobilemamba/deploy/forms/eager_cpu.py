"""The ``'eager-cpu'`` pass: PyTorch on a CPU at small batch.

Every form computes its module's function with kernels measured to be
faster at batch 1 on a CPU (docs/benchmarks/speed.md), and falls back to
the standard operator for inputs its kernel does not take (another device
or dtype, a gradient):

* a dense 1x1 stride-1 convolution -> :class:`PointwiseConv2d`, a
  token-major product with the weight in oneDNN's packed layout, the ReLU
  after it fused into the product inside FFN and PatchMerging;
* a depthwise 1x1 convolution -> :class:`ChannelAffine` (``addcmul``;
  PyTorch runs it as a loop of im2col products, ~1 ms per call at batch 1);
* a depthwise k x k convolution -> :class:`CompiledDepthwiseConv2d`
  (the compiled kernel for small maps);
* squeeze-excite -> :class:`SqueezeExciteLinear` (products on the pooled
  vector instead of convolutions on a 1x1 map);
* the Haar transform -> :class:`HaarWaveletMatmul` (4x4 products per patch);
* the stem -> :class:`ChannelsLastStem`: the image is made channels-last,
  which the 1x1 products write anyway, and oneDNN's convolutions run
  1.2-2x faster on it at batch 1 (no reorder around each call).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from mmmobilemamba.models.bricks import FFN, PatchMerging, SqueezeExcite
from mmmobilemamba.models.ss2d import SS2D
from mmmobilemamba.models.stem import Stem
from mmmobilemamba.models.wte_mamba import WTEMamba
from mmmobilemamba.ops import packed_linear
from mmmobilemamba.ops.depthwise_conv import use_compiled
from mmmobilemamba.ops.wavelet import (HaarWavelet2d, haar_dwt2d_matmul,
                                       haar_idwt2d_matmul,
                                       register_haar_matrices)
from . import Pass, recast
from .fused import FusedConv


class ChannelAffine(nn.Conv2d):
    """A depthwise 1x1 convolution as per-channel ``x * weight + bias``
    (same parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x,
                             self.weight.view(1, -1, 1, 1))


class PointwiseConv2d(nn.Conv2d):
    """A 1x1, stride-1, ungrouped convolution as a token-major product.

    A linear layer on the (B*H*W, C) view of the input, returned as a
    channels-last (B, C', H, W) view (no copy either side for a
    channels-last input); on float32 CPU tensors the weight is used in
    oneDNN's packed layout (:mod:`mmmobilemamba.ops.packed_linear`). At
    every 1x1 shape of T2 (batch 1, 8 and 32; 1 and 2 threads) this is never
    slower than ``F.conv2d`` and up to 4.7x faster on the 3x3 maps of stage
    3, where the convolution takes the im2col path. ``fused_relu`` applies
    a ReLU inside the product.
    """
    fused_relu = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h * w).transpose(1, 2).reshape(b * h * w, c)
        y = packed_linear.linear(tokens, self.weight, self.bias,
                                 self.fused_relu)
        # Channels-last with a proper batch stride even at batch 1: a
        # size-1 batch dim with a smaller stride makes torch.cat and
        # elementwise ops choose NCHW for their outputs.
        return y.view(b, h, w, self.out_channels).permute(0, 3, 1, 2)


class CompiledDepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution through the compiled CPU kernel where it is
    measured to win (:func:`~mmmobilemamba.ops.depthwise_conv.
    use_compiled`: small float32 maps, kernels up to 5x5), else
    ``F.conv2d``. ``pads`` is the zero padding per side."""
    pads: Tuple[int, int] = (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_compiled(x, self.weight, self.stride, self.pads,
                        self.dilation):
            return torch.ops.mmmobilemamba.depthwise_conv2d(
                x, self.weight, self.bias, list(self.stride),
                list(self.pads))
        return super().forward(x)


def _symmetric_pads(conv: nn.Conv2d) -> Optional[Tuple[int, int]]:
    """Zero padding per side as two ints, or None (asymmetric 'same',
    another padding mode)."""
    if conv.padding_mode != 'zeros':
        return None
    if conv.padding == 'valid':
        return (0, 0)
    if conv.padding == 'same':
        if any(k % 2 == 0 for k in conv.kernel_size):
            return None
        return tuple(k // 2 for k in conv.kernel_size)
    return tuple(conv.padding)


def cpu_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """The eager-CPU form of a convolution (or the convolution itself)."""
    cin, cout, groups = conv.in_channels, conv.out_channels, conv.groups
    pointwise = (conv.kernel_size == (1, 1) and conv.stride == (1, 1)
                 and _symmetric_pads(conv) == (0, 0))
    depthwise = groups == cin == cout
    if pointwise and depthwise and conv.bias is not None:
        return recast(conv, ChannelAffine)
    if pointwise and groups == 1:
        return recast(conv, PointwiseConv2d)
    pads = _symmetric_pads(conv)
    if depthwise and max(conv.kernel_size) > 1 and pads is not None:
        recast(conv, CompiledDepthwiseConv2d).pads = pads
    return conv


def fused_conv(module: FusedConv) -> FusedConv:
    module.conv = cpu_conv(module.conv)
    return module


def fuse_relu(module: nn.Module, conv_bn: str, act: str) -> nn.Module:
    """Move ``module.<act>`` (a ReLU after ``module.<conv_bn>``) into the
    product of a pointwise layer."""
    conv = getattr(getattr(module, conv_bn), 'conv', None)
    if isinstance(conv, PointwiseConv2d) and isinstance(
            getattr(module, act), nn.ReLU):
        conv.fused_relu = True
        setattr(module, act, nn.Identity())
    return module


class SqueezeExciteLinear(SqueezeExcite):
    """Squeeze-excite with its two 1x1 convolutions on the pooled (B, C)
    vector run as linear layers (same parameters): as convolutions on a
    1x1 map they take PyTorch's slow im2col path at batch 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3))
        gate = packed_linear.linear(gate, self.fc1.weight, self.fc1.bias,
                                    relu=True)
        gate = packed_linear.linear(gate, self.fc2.weight, self.fc2.bias)
        return x * torch.sigmoid(gate)[:, :, None, None]


class HaarWaveletMatmul(HaarWavelet2d):
    """The Haar transform as pixel-(un)shuffles and 4x4 matrix products,
    several times faster at batch 1 than the grouped stride-2 convolution
    (a loop over channels in PyTorch's CPU fallback)."""

    def dwt(self, x: torch.Tensor) -> torch.Tensor:
        return haar_dwt2d_matmul(x, self.dec_mix)

    def idwt(self, y: torch.Tensor, size=None) -> torch.Tensor:
        return haar_idwt2d_matmul(y, self.rec_mix_t, size)


def haar_matmul(module: HaarWavelet2d) -> HaarWavelet2d:
    register_haar_matrices(module)
    return recast(module, HaarWaveletMatmul)


class ChannelsLastStem(Stem):
    """The stem on a channels-last copy of the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def ss2d(module: SS2D) -> SS2D:
    module.dwconv = cpu_conv(module.dwconv)
    return module


def wte_mamba(module: WTEMamba) -> WTEMamba:
    module.wavelet_conv = cpu_conv(module.wavelet_conv)
    return module


PASS = Pass('eager-cpu', {
    FusedConv: fused_conv,
    FFN: lambda m: fuse_relu(m, 'pw1', 'act'),
    PatchMerging: lambda m: fuse_relu(m, 'expand', 'act1'),
    SqueezeExcite: lambda m: recast(m, SqueezeExciteLinear),
    HaarWavelet2d: haar_matmul,
    Stem: lambda m: recast(m, ChannelsLastStem),
    SS2D: ss2d,
    WTEMamba: wte_mamba,
})
