"""BatchNorm folding: the arithmetic of the ``'fused'`` conversion
(:mod:`.forms.fused`).

The fused form of a Conv-BN is one convolution with bias::

    w' = w * g / sqrt(v + eps),   b' = beta + (b - mu) * g / sqrt(v + eps)

and a BatchNorm1d followed by a Linear becomes one Linear::

    W' = W diag(g / sqrt(v + eps)),   b' = W (beta - mu g / sqrt(v + eps)) + b

Only torch is needed here.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) such that bn(x) = x * scale + shift."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'{bn} tracks no running statistics and cannot be '
                         'folded')
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    weight = (bn.weight.double() if bn.weight is not None else
              torch.ones_like(std))
    bias = (bn.bias.double() if bn.bias is not None else
            torch.zeros_like(std))
    scale = weight / std
    return scale, bias - bn.running_mean.double() * scale


@torch.no_grad()
def fold_bn_into_conv(
        weight: torch.Tensor, bias: Optional[torch.Tensor],
        bn: nn.modules.batchnorm._BatchNorm
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold a BatchNorm that follows a convolution into its weight and bias.

    Computed in float64 and cast back, so fusion adds no rounding of its own
    beyond the final cast.

    Args:
        weight (Tensor): Conv weight, (C_out, C_in / groups, kh, kw).
        bias (Tensor, optional): Conv bias, (C_out,), or None.
        bn (_BatchNorm): The BatchNorm over the C_out channels.

    Returns:
        tuple[Tensor, Tensor]: Fused (weight, bias) in ``weight``'s dtype.
    """
    if weight.shape[0] != bn.num_features:
        raise ValueError(f'conv has {weight.shape[0]} output channels but the '
                         f'BatchNorm has {bn.num_features}')
    scale, shift = _bn_scale_shift(bn)
    shape = (-1, ) + (1, ) * (weight.dim() - 1)
    new_weight = weight.double() * scale.reshape(shape)
    new_bias = shift if bias is None else bias.double() * scale + shift
    return new_weight.to(weight.dtype), new_bias.to(weight.dtype)


@torch.no_grad()
def fold_bn_into_linear(
        bn: nn.modules.batchnorm._BatchNorm,
        linear: nn.Linear) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold a BatchNorm1d that precedes a Linear layer into the Linear.

    Args:
        bn (_BatchNorm): BatchNorm over the Linear's input features.
        linear (nn.Linear): The following Linear layer.

    Returns:
        tuple[Tensor, Tensor]: Fused (weight, bias) of the Linear.
    """
    if linear.in_features != bn.num_features:
        raise ValueError(f'Linear has {linear.in_features} input features but '
                         f'the BatchNorm has {bn.num_features}')
    scale, shift = _bn_scale_shift(bn)
    w = linear.weight.double()
    b = (linear.bias.double() if linear.bias is not None else
         torch.zeros(w.shape[0], dtype=torch.float64, device=w.device))
    new_weight = w * scale[None, :]
    new_bias = w @ shift + b
    dtype = linear.weight.dtype
    return new_weight.to(dtype), new_bias.to(dtype)
