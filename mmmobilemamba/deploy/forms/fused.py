"""The ``'fused'`` pass: every BatchNorm folded into the layer beside it
(:mod:`..fold`).

* :class:`~mmmobilemamba.models.bricks.ConvBN` -> :class:`FusedConv`, one
  convolution with bias; its state_dict is ``conv.weight`` and
  ``conv.bias``, which is what a model built with ``deploy=True`` loads;
* :class:`~mmmobilemamba.models.bricks.ResidualDWConv` -> :class:`FusedConv`
  with the identity added to each kernel's centre tap (RepVGG's
  re-parameterisation: a depthwise 3x3 conv with padding 1 plus the
  identity is the same conv with 1 added at the centre);
* ``BNLinearClsHead`` -> the same head with its BatchNorm folded into the
  Linear (``bn`` becomes an identity);
* any other module offering ``switch_to_deploy()`` (mmpretrain's RepVGG,
  MobileOne) is switched by it.
"""
import torch
import torch.nn as nn

from mmmobilemamba.models.bricks import ConvBN, ResidualDWConv
from ..fold import fold_bn_into_conv, fold_bn_into_linear
from . import Pass


class FusedConv(nn.Module):
    """A Conv-BN after folding: one convolution with bias.

    Args:
        conv (nn.Conv2d): The convolution (with bias).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@torch.no_grad()
def fuse_conv_bn(module: ConvBN) -> FusedConv:
    """The :class:`FusedConv` computing ``module`` in eval mode."""
    old = module.conv
    weight, bias = fold_bn_into_conv(old.weight, old.bias, module.bn)
    conv = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size,
                     old.stride, old.padding, old.dilation, old.groups,
                     bias=True, padding_mode=old.padding_mode).to(weight)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return FusedConv(conv)


@torch.no_grad()
def fuse_residual_dw(module: ResidualDWConv) -> FusedConv:
    """``x + DW(x)`` as one depthwise convolution."""
    fused = fuse_conv_bn(module)
    centre = fused.conv.kernel_size[0] // 2
    fused.conv.weight[:, 0, centre, centre] += 1
    return fused


@torch.no_grad()
def fuse_head(head: nn.Module) -> nn.Module:
    """Fold the head's BatchNorm1d into its Linear layer."""
    if isinstance(head.bn, nn.Identity):
        return head
    weight, bias = fold_bn_into_linear(head.bn, head.fc)
    head.fc.weight.copy_(weight)
    head.fc.bias.copy_(bias)
    head.bn = nn.Identity()
    head.deploy = True
    return head


def switch_foreign(module: nn.Module) -> nn.Module:
    """Modules of other toolboxes that re-parameterise themselves."""
    switch = getattr(module, 'switch_to_deploy', None)
    if callable(switch):
        switch()
    return module


_RULES = {ConvBN: fuse_conv_bn, ResidualDWConv: fuse_residual_dw}
try:  # the head needs mmpretrain; without it no model can hold one
    from mmmobilemamba.models.heads.bn_linear_head import BNLinearClsHead
    _RULES[BNLinearClsHead] = fuse_head
except ImportError:
    pass

PASS = Pass('fused', _RULES, fallback=switch_foreign)
