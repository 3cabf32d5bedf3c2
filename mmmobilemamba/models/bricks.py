"""Building bricks of MobileMamba (docs/architecture.md#bricks).

* :class:`ConvBN` - bias-free Conv2d + BatchNorm2d (fusable into one conv);
* :class:`FFN` - 1x1 expand, ReLU, 1x1 project (zero-initialised output);
* :class:`DWConv` - depthwise 3x3 Conv-BN, and :class:`ResidualDWConv`,
  ``x + DW(x)`` (the identity folds into the kernel in deploy mode);
* :class:`SqueezeExcite` - channel gating from global context;
* :class:`PatchMerging` - the stride-2 downsampling between stages;
* :class:`DropPath` - stochastic depth.

Other residual connections (``x + m(x)``) are written out in the forward of
the modules that use them, which keeps checkpoint key names short.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmmobilemamba.ops import packed_linear
from mmmobilemamba.ops.depthwise_conv import use_compiled
from mmmobilemamba.ops.export_forms import delegate_forms
from .fusion import fold_bn_into_conv


def layer_norm_over_channels(x: torch.Tensor,
                             norm: nn.LayerNorm) -> torch.Tensor:
    """``norm`` (a LayerNorm over C) applied to each position of a
    (B, C, H, W) map, written in operators that XNNPACK takes.

    XNNPACK has no LayerNorm, and its mean reduces the two innermost dims
    of a 4-D tensor only: the map is viewed as (B, H*W, C, 1) and
    normalised with mean, subtraction, multiplications and rsqrt (biased
    variance, as ``nn.LayerNorm``).
    """
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


class ChannelAffine(nn.Module):
    """Per-channel ``x * weight + bias``: the deploy form of a depthwise 1x1
    Conv-BN.

    A depthwise 1x1 convolution is a per-channel scale, but PyTorch's CPU
    convolution runs it as a loop over groups of im2col products
    (``aten::_slow_conv2d_forward``), about a millisecond per call at batch
    1. The parameters keep the convolution's names and shapes
    (``weight`` (C, 1, 1, 1), ``bias`` (C,)), so a fused checkpoint loads
    whichever form the model was built in.

    Args:
        channels (int): Channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_channels = self.out_channels = self.groups = channels
        self.kernel_size = (1, 1)
        self.weight = nn.Parameter(torch.ones(channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if delegate_forms():  # addcmul lowers with a scalar outside XNNPACK
            return x * self.weight.view(1, -1, 1, 1) + self.bias.view(
                1, -1, 1, 1)
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x,
                             self.weight.view(1, -1, 1, 1))

    def extra_repr(self) -> str:
        return f'channels={self.in_channels}'


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution (``groups == in_channels == out_channels``)
    that runs small problems through the compiled CPU kernel.

    Same parameters, state_dict and result as :class:`torch.nn.Conv2d`.
    When no gradient is needed, on a float32 CPU input, outside tracing and
    export, problems of at most
    :data:`mmmobilemamba.ops.depthwise_conv.MAX_COMPILED_WORK`
    multiply-adds (the maps of batch-1 inference) go to
    ``torch.ops.mmmobilemamba.depthwise_conv2d``; everything else, training
    included, is ``F.conv2d``.

    Args:
        channels (int): Channels C.
        kernel_size (int): Square kernel size.
        stride (int): Stride. Defaults to 1.
        padding (int | str): Zero padding, or ``'same'`` / ``'valid'`` as
            in :class:`torch.nn.Conv2d`. Defaults to 0.
        bias (bool): Add a learnable bias. Defaults to True.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1,
                 padding: Union[int, str] = 0, bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, stride, padding,
                         groups=channels, bias=bias)
        self._pads = self._explicit_padding()

    def _explicit_padding(self) -> Optional[Tuple[int, int]]:
        """Symmetric zero padding per side as two ints, or None when the
        padding cannot be written so (even kernel with 'same', a padding
        mode other than zeros)."""
        if self.padding_mode != 'zeros':
            return None
        if self.padding == 'valid':
            return (0, 0)
        if self.padding == 'same':
            if any(k % 2 == 0 for k in self.kernel_size):
                return None  # asymmetric padding
            return tuple(k // 2 for k in self.kernel_size)
        return tuple(self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._pads is not None and use_compiled(
                x, self.weight, self.stride, self._pads, self.dilation):
            return torch.ops.mmmobilemamba.depthwise_conv2d(
                x, self.weight, self.bias, list(self.stride),
                list(self._pads))
        return super().forward(x)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1, stride-1, ungrouped convolution computed as a token-major
    matrix product: the deploy form of such a Conv-BN.

    A linear layer on the (B*H*W, C) view of the input, whose result is
    returned as a channels-last (B, C', H, W) view (no copy either side;
    a channels-last input is read without a copy too); in eager inference
    the weight is used in oneDNN's packed layout
    (:mod:`mmmobilemamba.ops.packed_linear`). Measured on the
    CPU of docs/benchmarks/speed.md at every 1x1 shape of T2 (batch 1, 8
    and 32, 1 and 2 threads), this is never slower than ``F.conv2d`` and up
    to 4.7x faster on the 3x3 maps of stage 3: the convolution takes the
    im2col path at batch 1, and the channel-major product
    (C' x C) @ (C x H*W) with H*W = 9 columns is a poor shape for the BLAS.
    Same parameters and state_dict as :class:`torch.nn.Conv2d`.
    """

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """The convolution, followed by a ReLU if ``relu`` (fused into the
        product where the packed path runs)."""
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
            # onnxruntime runs a 1x1 Conv well; the product would add two
            # Transposes per layer to the graph (measured 11 % slower). In
            # torch.export (ExecuTorch) its channels-last views would mix
            # dim orders, which ExecuTorch's portable kernels refuse.
            y = super().forward(x)
            return torch.relu(y) if relu else y
        b, c, h, w = x.shape
        # (B*H*W, C) rows: a view when x is channels-last
        tokens = x.reshape(b, c, h * w).transpose(1, 2).reshape(b * h * w, c)
        y = packed_linear.linear(tokens, self.weight, self.bias, relu)
        # Channels-last with a proper batch stride even at batch 1: a
        # size-1 batch dim with a smaller stride makes torch.cat and
        # elementwise ops choose NCHW for their outputs.
        return y.view(b, h, w, self.out_channels).permute(0, 3, 1, 2)


def conv_relu(conv_bn: 'ConvBN', relu: nn.ReLU,
              x: torch.Tensor) -> torch.Tensor:
    """``relu(conv_bn(x))``, with the ReLU fused into the product when the
    brick is a deploy-form pointwise layer."""
    if conv_bn.deploy and isinstance(conv_bn.conv, PointwiseConv2d):
        return conv_bn.conv(x, relu=True)
    return relu(conv_bn(x))


def make_conv(in_channels: int, out_channels: int, kernel_size: int,
              stride: int, padding: int, groups: int,
              bias: bool) -> nn.Conv2d:
    """A :class:`DepthwiseConv2d` when the convolution is depthwise with a
    kernel larger than 1, else a plain :class:`torch.nn.Conv2d`."""
    if groups == in_channels == out_channels and kernel_size > 1:
        return DepthwiseConv2d(in_channels, kernel_size, stride, padding,
                               bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                     groups=groups, bias=bias)


def deploy_conv(in_channels: int, out_channels: int, kernel_size: int,
                stride: int, padding: int, groups: int) -> nn.Module:
    """The module a fused Conv-BN computes with (bias always present):
    :class:`ChannelAffine` for a depthwise 1x1, :class:`PointwiseConv2d`
    for a dense 1x1 at stride 1, else :func:`make_conv`."""
    pointwise = kernel_size == 1 and stride == 1 and padding == 0
    if pointwise and groups == in_channels == out_channels:
        return ChannelAffine(in_channels)
    if pointwise and groups == 1:
        return PointwiseConv2d(in_channels, out_channels, 1)
    return make_conv(in_channels, out_channels, kernel_size, stride, padding,
                     groups, bias=True)


class ConvBN(nn.Module):
    """Conv2d without bias followed by BatchNorm2d.

    Fused (docs/architecture.md#deploy), the pair is one Conv2d with bias; the
    state_dict then holds ``conv.weight`` and ``conv.bias`` instead of
    ``conv.weight`` and ``bn.*``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Square kernel size. Defaults to 1.
        stride (int): Stride. Defaults to 1.
        padding (int, optional): Zero padding; None means ``kernel_size // 2``
            ("same" for odd kernels at stride 1). Defaults to None.
        groups (int): Convolution groups (``in_channels`` = depthwise).
            Defaults to 1.
        bn_weight_init (float): Initial BatchNorm weight; 0 makes the brick
            output exactly zero at initialisation (a branch that starts as a
            no-op). Defaults to 1.0.
        deploy (bool): Build the fused form. Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 padding: Optional[int] = None,
                 groups: int = 1,
                 bn_weight_init: float = 1.0,
                 deploy: bool = False) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.deploy = deploy
        if deploy:
            self.conv = deploy_conv(in_channels, out_channels, kernel_size,
                                    stride, padding, groups)
        else:
            self.conv = make_conv(in_channels, out_channels, kernel_size,
                                  stride, padding, groups, bias=False)
            self.bn = nn.BatchNorm2d(out_channels)
            nn.init.constant_(self.bn.weight, bn_weight_init)
            nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.deploy else self.bn(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BatchNorm into the convolution (idempotent)."""
        if self.deploy:
            return
        weight, bias = fold_bn_into_conv(self.conv.weight, None, self.bn)
        old = self.conv
        self.conv = deploy_conv(old.in_channels, old.out_channels,
                                old.kernel_size[0], old.stride[0],
                                old.padding[0], old.groups).to(weight.device)
        self.conv.weight.copy_(weight)
        self.conv.bias.copy_(bias)
        del self.bn
        self.deploy = True


class DWConv(ConvBN):
    """Depthwise 3x3 Conv-BN ("DW" in docs/architecture.md#bricks).

    Args:
        channels (int): Channels.
        bn_weight_init (float): Initial BatchNorm weight: 0 inside a
            MobileMamba block, 1 in the downsampling bricks. Defaults to 1.0.
        deploy (bool): Build the fused form. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 bn_weight_init: float = 1.0,
                 deploy: bool = False) -> None:
        super().__init__(channels, channels, 3, groups=channels,
                         bn_weight_init=bn_weight_init, deploy=deploy)


class ResidualDWConv(DWConv):
    """``x + DW(x)``: a depthwise 3x3 Conv-BN with its identity shortcut.

    In deploy mode the shortcut is folded into the kernel as well (RepVGG's
    re-parameterisation): a depthwise 3x3 conv with padding 1 plus the
    identity equals the same conv with 1 added to each kernel's centre tap.
    The fused form is therefore a single conv, with the same state_dict
    keys as a fused :class:`DWConv`.

    Args:
        channels (int): Channels.
        bn_weight_init (float): Initial BatchNorm weight (0 makes the module
            start as the identity). Defaults to 1.0.
        deploy (bool): Build the fused form. Defaults to False.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.conv(x)
        return x + self.bn(self.conv(x))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BatchNorm and the identity into the conv (idempotent)."""
        if self.deploy:
            return
        super().switch_to_deploy()
        centre = self.conv.kernel_size[0] // 2
        self.conv.weight[:, 0, centre, centre] += 1


class FFN(nn.Module):
    """Pointwise feed-forward: Conv-BN 1x1 C->rC, ReLU, Conv-BN 1x1 rC->C.

    The second BatchNorm is zero-initialised, so ``x + FFN(x)`` starts as the
    identity.

    Args:
        channels (int): Input and output channels C.
        ratio (float): Hidden expansion r. Defaults to 2.
        deploy (bool): Build the fused form. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 ratio: float = 2,
                 deploy: bool = False) -> None:
        super().__init__()
        hidden = int(channels * ratio)
        self.pw1 = ConvBN(channels, hidden, deploy=deploy)
        self.act = nn.ReLU()
        self.pw2 = ConvBN(hidden, channels, bn_weight_init=0., deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(conv_relu(self.pw1, self.act, x))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean_HW(x))))).

    In deploy mode the two 1x1 convolutions on the pooled (B, C, 1, 1)
    vector run as ``F.linear`` on (B, C) (same parameters): as convolutions
    on a 1x1 map they take PyTorch's slow im2col path at batch 1.

    Args:
        channels (int): Channels C.
        reduction (float): Hidden width as a fraction of C; the hidden width
            is ``round(C * reduction)``. Defaults to 0.25.
        deploy (bool): Use the deploy form. Defaults to False.
    """

    def __init__(self, channels: int, reduction: float = 0.25,
                 deploy: bool = False) -> None:
        super().__init__()
        hidden = int(round(channels * reduction))
        if hidden < 1:
            raise ValueError(f'SqueezeExcite reduction {reduction} leaves no '
                             f'hidden channel for {channels} channels')
        self.deploy = deploy
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A delegate takes the conv form (XNNPACK: global average pooling
        # and 1x1 convs), not the reshaped weights of the linear one.
        if self.deploy and not delegate_forms():
            gate = x.mean((2, 3))
            gate = packed_linear.linear(gate, self.fc1.weight, self.fc1.bias,
                                        relu=True)
            gate = packed_linear.linear(gate, self.fc2.weight, self.fc2.bias)
            return x * torch.sigmoid(gate)[:, :, None, None]
        gate = x.mean((2, 3), keepdim=True)
        gate = self.fc2(self.act(self.fc1(gate)))
        return x * torch.sigmoid(gate)

    def switch_to_deploy(self) -> None:
        """Switch to the linear form (nothing to fold; idempotent)."""
        self.deploy = True


class PatchMerging(nn.Module):
    """Stride-2 downsampling (docs/architecture.md#stages), hidden width 4C.

    Conv-BN 1x1 C->4C, ReLU, depthwise 3x3 stride-2 Conv-BN, ReLU,
    squeeze-excite (4C->C->4C), Conv-BN 1x1 4C->C'. An odd side n becomes
    ceil(n / 2).

    Args:
        in_channels (int): C.
        out_channels (int): C'.
        expansion (int): Hidden width multiplier. Defaults to 4.
        se_reduction (float): Squeeze-excite reduction. Defaults to 0.25.
        deploy (bool): Build the fused form. Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 expansion: int = 4,
                 se_reduction: float = 0.25,
                 deploy: bool = False) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvBN(in_channels, hidden, deploy=deploy)
        self.act1 = nn.ReLU()
        self.dw = ConvBN(hidden, hidden, 3, stride=2, groups=hidden,
                         deploy=deploy)
        self.act2 = nn.ReLU()
        self.se = SqueezeExcite(hidden, se_reduction, deploy=deploy)
        self.project = ConvBN(hidden, out_channels, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_relu(self.expand, self.act1, x)
        x = self.act2(self.dw(x))
        return self.project(self.se(x))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample.

    Kept samples are scaled by 1 / (1 - p) so the expectation is unchanged;
    identity in eval mode or when p = 0.

    Args:
        drop_prob (float): Probability p of dropping. Defaults to 0.
    """

    def __init__(self, drop_prob: float = 0.) -> None:
        super().__init__()
        if not 0. <= drop_prob < 1.:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob}')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.:
            return x
        keep = 1. - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1))
        mask.bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob:.4g}'

