"""A MobileMamba stage and the downsampling that opens stages 2 and 3
(docs/architecture.md#stages).

Downsampling from C to C' (no stochastic depth here)::

    x = x + DW(x);  x = x + FFN(x)            at C, stride s
    x = PatchMerging(x)                        C -> C', stride 2s
    x = x + DW(x);  x = x + FFN(x)            at C'

The depthwise convs here start with BN weight 1 (not 0); the FFNs' last BN
starts at 0 as everywhere.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .block import MobileMambaBlock
from .bricks import FFN, PatchMerging, ResidualDWConv


class Downsample(nn.Module):
    """Residual DW + FFN bricks around a PatchMerging.

    Args:
        in_channels (int): C.
        out_channels (int): C'.
        ffn_ratio (float): FFN expansion. Defaults to 2.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 ffn_ratio: float = 2) -> None:
        super().__init__()
        self.pre_dw = ResidualDWConv(in_channels)
        self.pre_ffn = FFN(in_channels, ffn_ratio)
        self.merge = PatchMerging(in_channels, out_channels)
        self.post_dw = ResidualDWConv(out_channels)
        self.post_ffn = FFN(out_channels, ffn_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_dw(x)  # x + DW(x)
        x = x + self.pre_ffn(x)
        x = self.merge(x)
        x = self.post_dw(x)  # x + DW(x)
        return x + self.post_ffn(x)


class MobileMambaStage(nn.Module):
    """Optional downsampling followed by ``depth`` MobileMamba blocks.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (the blocks' width).
        depth (int): Number of blocks (>= 0).
        kernel_size (int | Sequence[int]): MRFFI local kernel size(s).
        global_ratio (float): MRFFI global share.
        local_ratio (float): MRFFI local share.
        downsample (bool): Open with :class:`Downsample` (stride 2).
        ffn_ratio (float): FFN expansion. Defaults to 2.
        ssm_ratio (float): SS2D expansion. Defaults to 2.
        d_state (int): SS2D state size. Defaults to 1.
        drop_paths (Sequence[float], optional): Stochastic-depth rate of each
            block; None means 0 for all. Defaults to None.
        with_cp (bool): Gradient checkpointing of each block while training.
            Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 depth: int,
                 kernel_size: Union[int, Sequence[int]],
                 global_ratio: float,
                 local_ratio: float,
                 downsample: bool,
                 ffn_ratio: float = 2,
                 ssm_ratio: float = 2,
                 d_state: int = 1,
                 drop_paths: Optional[Sequence[float]] = None,
                 with_cp: bool = False) -> None:
        super().__init__()
        if not downsample and in_channels != out_channels:
            raise ValueError(f'a stage without downsampling keeps its width, '
                             f'got {in_channels} -> {out_channels}')
        drop_paths = [0.] * depth if drop_paths is None else list(drop_paths)
        if len(drop_paths) != depth:
            raise ValueError(f'{len(drop_paths)} drop-path rates for '
                             f'{depth} blocks')
        self.with_cp = with_cp
        self.downsample = Downsample(
            in_channels, out_channels, ffn_ratio) if downsample else None
        self.blocks = nn.Sequential(*[
            MobileMambaBlock(out_channels, kernel_size, global_ratio,
                             local_ratio, ffn_ratio=ffn_ratio,
                             ssm_ratio=ssm_ratio, d_state=d_state,
                             drop_path=rate)
            for rate in drop_paths
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(
                    block, x, use_reentrant=False)
            else:
                x = block(x)
        return x
