"""Building bricks of MobileMamba (docs/architecture.md#bricks), in the
form they are trained in. Inference forms (BatchNorms folded, kernels for
one runtime) are made from them by :func:`mmmobilemamba.deploy.convert`.

* :class:`ConvBN` - bias-free Conv2d + BatchNorm2d;
* :class:`FFN` - 1x1 expand, ReLU, 1x1 project (zero-initialised output);
* :class:`DWConv` - depthwise 3x3 Conv-BN, and :class:`ResidualDWConv`,
  ``x + DW(x)``;
* :class:`SqueezeExcite` - channel gating from global context;
* :class:`PatchMerging` - the stride-2 downsampling between stages;
* :class:`DropPath` - stochastic depth.

Other residual connections (``x + m(x)``) are written out in the forward of
the modules that use them, which keeps checkpoint key names short.
"""
from typing import Optional

import torch
import torch.nn as nn


class ConvBN(nn.Module):
    """Conv2d without bias followed by BatchNorm2d.

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
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 padding: Optional[int] = None,
                 groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DWConv(ConvBN):
    """Depthwise 3x3 Conv-BN ("DW" in docs/architecture.md#bricks).

    Args:
        channels (int): Channels.
        bn_weight_init (float): Initial BatchNorm weight: 0 inside a
            MobileMamba block, 1 in the downsampling bricks. Defaults to 1.0.
    """

    def __init__(self, channels: int, bn_weight_init: float = 1.0) -> None:
        super().__init__(channels, channels, 3, groups=channels,
                         bn_weight_init=bn_weight_init)


class ResidualDWConv(DWConv):
    """``x + DW(x)``: a depthwise 3x3 Conv-BN with its identity shortcut
    (one convolution once fused: the identity is the kernel's centre tap).

    Args:
        channels (int): Channels.
        bn_weight_init (float): Initial BatchNorm weight (0 makes the module
            start as the identity). Defaults to 1.0.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.conv(x))


class FFN(nn.Module):
    """Pointwise feed-forward: Conv-BN 1x1 C->rC, ReLU, Conv-BN 1x1 rC->C.

    The second BatchNorm is zero-initialised, so ``x + FFN(x)`` starts as the
    identity.

    Args:
        channels (int): Input and output channels C.
        ratio (float): Hidden expansion r. Defaults to 2.
    """

    def __init__(self, channels: int, ratio: float = 2) -> None:
        super().__init__()
        hidden = int(channels * ratio)
        self.pw1 = ConvBN(channels, hidden)
        self.act = nn.ReLU()
        self.pw2 = ConvBN(hidden, channels, bn_weight_init=0.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean_HW(x))))).

    Args:
        channels (int): Channels C.
        reduction (float): Hidden width as a fraction of C; the hidden width
            is ``round(C * reduction)``. Defaults to 0.25.
    """

    def __init__(self, channels: int, reduction: float = 0.25) -> None:
        super().__init__()
        hidden = int(round(channels * reduction))
        if hidden < 1:
            raise ValueError(f'SqueezeExcite reduction {reduction} leaves no '
                             f'hidden channel for {channels} channels')
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(gate))))


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
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 expansion: int = 4,
                 se_reduction: float = 0.25) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvBN(in_channels, hidden)
        self.act1 = nn.ReLU()
        self.dw = ConvBN(hidden, hidden, 3, stride=2, groups=hidden)
        self.act2 = nn.ReLU()
        self.se = SqueezeExcite(hidden, se_reduction)
        self.project = ConvBN(hidden, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.expand(x))
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
