"""The MobileMamba block (docs/architecture.md#block).

    y = x + DW(x)          (zero-initialised BN)
    y = y + FFN(y)
    y = y + MRFFI(y)
    y = y + DW'(y)         (zero-initialised BN)
    y = y + FFN'(y)
    out = x + DropPath(y)

Note the double identity: ``y`` already contains ``x``, so a freshly
initialised block (every branch ending in a zero-initialised BN) returns
exactly ``2 * x``. The released weights were trained with it, so it is kept
as a documented quirk rather than "fixed".
"""
from typing import Sequence, Union

import torch
import torch.nn as nn

from .bricks import FFN, DropPath, ResidualDWConv
from .mrffi import MRFFI


class MobileMambaBlock(nn.Module):
    """One MobileMamba block on ``channels`` channels.

    Args:
        channels (int): C.
        kernel_size (int | Sequence[int]): Local kernel size(s) of MRFFI.
        global_ratio (float): MRFFI global share.
        local_ratio (float): MRFFI local share.
        ffn_ratio (float): FFN expansion. Defaults to 2.
        ssm_ratio (float): SS2D expansion. Defaults to 2.
        d_state (int): SS2D state size. Defaults to 1.
        drop_path (float): Stochastic-depth rate of the outer residual.
            Defaults to 0.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: Union[int, Sequence[int]],
                 global_ratio: float,
                 local_ratio: float,
                 ffn_ratio: float = 2,
                 ssm_ratio: float = 2,
                 d_state: int = 1,
                 drop_path: float = 0.) -> None:
        super().__init__()
        self.dw1 = ResidualDWConv(channels, bn_weight_init=0.)
        self.ffn1 = FFN(channels, ffn_ratio)
        self.mrffi = MRFFI(channels, kernel_size, global_ratio, local_ratio,
                           ssm_ratio=ssm_ratio, d_state=d_state)
        self.dw2 = ResidualDWConv(channels, bn_weight_init=0.)
        self.ffn2 = FFN(channels, ffn_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw1(x)  # x + DW(x)
        y = y + self.ffn1(y)
        y = y + self.mrffi(y)
        y = self.dw2(y)  # y + DW'(y)
        y = y + self.ffn2(y)
        return x + self.drop_path(y)
