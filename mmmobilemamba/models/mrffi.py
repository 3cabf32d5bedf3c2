"""Multi-receptive-field feature interaction (docs/architecture.md#mrffi).

The token mixer of the MobileMamba block. Channels are split three ways
(:func:`~mmmobilemamba.models.channel_split.split_channels`):

* global (Cg) -> :class:`~mmmobilemamba.models.wte_mamba.WTEMamba`
  (long-range scan plus wavelet-domain detail);
* local (Cl) -> :class:`~mmmobilemamba.models.mk_deconv.MKDeConv`;
* identity (Ci) -> passed through unchanged.

The groups are concatenated in that order, and the result goes through ReLU
and a zero-initialised Conv-BN 1x1 projection (so ``x + MRFFI(x)`` starts as
the identity).
"""
from typing import Sequence, Union

import torch
import torch.nn as nn

from .bricks import ConvBN
from .channel_split import split_channels
from .mk_deconv import MKDeConv
from .wte_mamba import WTEMamba


class MRFFI(nn.Module):
    """Multi-receptive-field feature interaction on ``channels`` channels.

    Args:
        channels (int): C.
        kernel_size (int | Sequence[int]): Local kernel size(s): one (the
            release's form) or several (true multi-kernel MK-DeConv). The
            wavelet-domain conv of the global branch uses the first.
        global_ratio (float): Global share (see ``split_channels``).
        local_ratio (float): Local share (see ``split_channels``).
        ssm_ratio (float): SS2D expansion. Defaults to 2.
        d_state (int): SS2D state size. Defaults to 1.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: Union[int, Sequence[int]],
                 global_ratio: float,
                 local_ratio: float,
                 ssm_ratio: float = 2,
                 d_state: int = 1) -> None:
        super().__init__()
        kernels = ((kernel_size, ) if isinstance(kernel_size, int) else
                   tuple(kernel_size))
        self.split = split_channels(channels, global_ratio, local_ratio)
        cg, cl, _ = self.split
        self.global_op = WTEMamba(cg, kernels[0], ssm_ratio=ssm_ratio,
                                  d_state=d_state) if cg else None
        self.local_op = MKDeConv(cl, kernels) if cl else None
        self.act = nn.ReLU()
        self.proj = ConvBN(channels, channels, bn_weight_init=0.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_global, x_local, x_identity = torch.split(
            x, list(self.split), dim=1)
        parts = []
        if self.global_op is not None:
            parts.append(self.global_op(x_global))
        if self.local_op is not None:
            parts.append(self.local_op(x_local))
        if self.split.identity_channels:
            parts.append(x_identity)
        return self.proj(self.act(torch.cat(parts, dim=1)))

    def extra_repr(self) -> str:
        g, l_, i = self.split
        return f'global={g}, local={l_}, identity={i}'
