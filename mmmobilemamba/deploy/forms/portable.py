"""The portable pass of the ``'onnx'`` and ``'xnnpack'`` targets: standard
operators in the shapes that ONNX Runtime and ExecuTorch's XNNPACK delegate
take (docs/deployment.md#delegation).

With these forms every operator of T2 goes into the XNNPACK delegate, and
onnxruntime runs the graph faster too (T2@192, 1 thread: 10.8 ms against
13.2 ms for the training form's graph):

* SS2D (:class:`SS2DPortable`): both 1x1 projections around the scan as
  convolutions (XNNPACK takes no product with the weight on the left),
  slices instead of ``chunk``, LayerNorm written as mean / rsqrt over a
  (B, H*W, C, 1) view (XNNPACK has no LayerNorm and reduces the two
  innermost dims of a 4-D tensor only), and the portable scan backend;
* MRFFI (:class:`MRFFISlices`): slices instead of ``split``;
* a depthwise 1x1 convolution (:class:`ChannelAffineMulAdd`): ``x * w + b``;
* the inverse Haar transform (:class:`HaarWaveletGrouped`): a grouped 1x1
  convolution and a pixel shuffle (XNNPACK has no transposed convolution).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmmobilemamba.models.mrffi import MRFFI
from mmmobilemamba.models.ss2d import NUM_DIRECTIONS, SS2D
from mmmobilemamba.ops.scan import selective_scan_bidirectional
from mmmobilemamba.ops.wavelet import (HaarWavelet2d, haar_idwt2d_grouped,
                                       register_haar_matrices)
from . import Pass, recast
from .fused import FusedConv

#: The scan backend written in standard operators.
PORTABLE_SCAN = 'portable'


def layer_norm_over_channels(x: torch.Tensor,
                             norm: nn.LayerNorm) -> torch.Tensor:
    """``norm`` (a LayerNorm over C) at each position of a (B, C, H, W) map,
    in mean, subtraction, multiplications and rsqrt over a (B, H*W, C, 1)
    view (biased variance, as ``nn.LayerNorm``)."""
    b, c, h, w = x.shape
    t = x.permute(0, 2, 3, 1).reshape(b, h * w, c, 1)
    t = t - t.mean((2, 3), keepdim=True)
    var = (t * t).mean((2, 3), keepdim=True)
    t = t * torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        t = t * norm.weight.reshape(1, 1, c, 1)
    if norm.bias is not None:
        t = t + norm.bias.reshape(1, 1, c, 1)
    return t.reshape(b, h, w, c).permute(0, 3, 1, 2)


def ss2d_projections(module: SS2D, x: torch.Tensor):
    """The scan's inputs from SS2D's map ``x`` (b, d, H, W) as 1x1
    convolutions: delta (b, K, d, L), B and C (b, K, N, L).

    The x projection is one convolution with its rows regrouped as (dt, B,
    C) of both directions, so that each part is one slice; the dt
    projection is a convolution with one group per direction, which writes
    the (b, K, d, L) layout of the scan. The weight reshapes are constants
    that the exporters fold.
    """
    b, _, h, w = x.shape
    # The weights' shapes from the module, not from x: a tracer records
    # x.shape as dynamic values, and ONNX needs static kernel shapes.
    d, k, r, n = module.d_inner, NUM_DIRECTIONS, module.dt_rank, module.d_state
    wx = module.x_proj_weight  # (k, R + 2N, d)
    weight = torch.cat([wx[:, :r].reshape(k * r, d),
                        wx[:, r:r + n].reshape(k * n, d),
                        wx[:, r + n:].reshape(k * n, d)])
    x_dbl = F.conv2d(x, weight[:, :, None, None])
    dts = F.conv2d(x_dbl[:, :k * r],
                   module.dt_proj_weight.reshape(k * d, r, 1, 1), groups=k)
    bs = x_dbl[:, k * r:k * (r + n)].reshape(b, k, n, h * w)
    cs = x_dbl[:, k * (r + n):].reshape(b, k, n, h * w)
    return dts.reshape(b, k, d, h * w), bs, cs


class SS2DPortable(SS2D):
    """SS2D in the operators a delegate takes (same parameters): the
    projections as convolutions (:func:`ss2d_projections`), the portable
    scan, LayerNorm as :func:`layer_norm_over_channels`."""

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        dts, bs, cs = ss2d_projections(self, x)
        y = selective_scan_bidirectional(
            x.reshape(b, self.d_inner, h * w), dts,
            -torch.exp(self.A_logs.float()), bs, cs, self.Ds.float(),
            self.dt_proj_bias.flatten().float(), delta_softplus=True,
            backend=PORTABLE_SCAN)
        return y.reshape(b, self.d_inner, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(x)
        x, z = xz[:, :self.d_inner], xz[:, self.d_inner:]
        x = self.act(self.dwconv(x))
        y = layer_norm_over_channels(self.scan(x), self.out_norm)
        return self.out_proj(y * self.act(z))


def ss2d(module: SS2D) -> SS2DPortable:
    module = recast(module, SS2DPortable)
    module.scan_backend = PORTABLE_SCAN
    return module


class MRFFISlices(MRFFI):
    """MRFFI with its channel groups taken by slices (no ``split``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cg, cl, ci = self.split
        parts = []
        if self.global_op is not None:
            parts.append(self.global_op(x[:, :cg]))
        if self.local_op is not None:
            parts.append(self.local_op(x[:, cg:cg + cl]))
        if ci:
            parts.append(x[:, cg + cl:])
        return self.proj(self.act(torch.cat(parts, dim=1)))


class ChannelAffineMulAdd(nn.Conv2d):
    """A depthwise 1x1 convolution as ``x * weight + bias`` (``addcmul``
    lowers with a scalar operand outside XNNPACK)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def fused_conv(module: FusedConv) -> FusedConv:
    conv = module.conv
    if (conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), 'valid')
            and conv.groups == conv.in_channels == conv.out_channels):
        recast(conv, ChannelAffineMulAdd)
    return module


class HaarWaveletGrouped(HaarWavelet2d):
    """The inverse transform as a grouped 1x1 convolution and a pixel
    shuffle; the forward one stays a strided grouped convolution."""

    def idwt(self, y: torch.Tensor, size=None) -> torch.Tensor:
        return haar_idwt2d_grouped(y, self.rec_mix_t, size)


def haar_grouped(module: HaarWavelet2d) -> HaarWavelet2d:
    register_haar_matrices(module)
    return recast(module, HaarWaveletGrouped)


PASS = Pass('portable', {
    SS2D: ss2d,
    MRFFI: lambda m: recast(m, MRFFISlices),
    FusedConv: fused_conv,
    HaarWavelet2d: haar_grouped,
})
