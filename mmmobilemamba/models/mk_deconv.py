"""MK-DeConv: the local branch of MRFFI (docs/architecture.md#mk-deconv).

Depthwise k x k Conv-BN, ReLU, then a per-channel (depthwise 1x1) Conv-BN.

The paper describes several kernel sizes inside one module; the release
uses a single kernel per stage (7, 5, 3) and its authors dropped the
multi-kernel form for speed. ``kernel_sizes`` of length 1 is the release's
form (the default); a longer tuple splits the channels into consecutive
slices, one per kernel size (earlier slices take the remainder), each with
its own depthwise Conv-BN - the paper's true multi-kernel form.
"""
from typing import List, Sequence, Union

import torch
import torch.nn as nn

from .bricks import ConvBN


def split_evenly(channels: int, parts: int) -> List[int]:
    """Split ``channels`` into ``parts`` near-equal sizes, larger first."""
    base, rest = divmod(channels, parts)
    return [base + (i < rest) for i in range(parts)]


class MKDeConv(nn.Module):
    """Multi-kernel depthwise convolution (local branch).

    Args:
        channels (int): Channels Cl.
        kernel_sizes (int | Sequence[int]): One kernel size (release form) or
            several (true multi-kernel, channels split evenly between them,
            in order). Every size must be odd.
    """

    def __init__(self,
                 channels: int,
                 kernel_sizes: Union[int, Sequence[int]]) -> None:
        super().__init__()
        if isinstance(kernel_sizes, int):
            kernel_sizes = (kernel_sizes, )
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f'kernel_sizes must be odd positive integers, '
                             f'got {kernel_sizes}')
        if len(kernel_sizes) > channels:
            raise ValueError(f'{len(kernel_sizes)} kernel sizes '
                             f'{kernel_sizes} need at least as many channels, '
                             f'got {channels}')
        self.channels = channels
        self.kernel_sizes = kernel_sizes
        self.splits = split_evenly(channels, len(kernel_sizes))
        self.spatial = nn.ModuleList(
            ConvBN(c, c, k, groups=c)
            for c, k in zip(self.splits, kernel_sizes))
        self.act = nn.ReLU()
        self.channel = ConvBN(channels, channels, 1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.spatial) == 1:
            x = self.spatial[0](x)
        else:
            parts = torch.split(x, self.splits, dim=1)
            x = torch.cat([m(p) for m, p in zip(self.spatial, parts)], dim=1)
        return self.channel(self.act(x))

    def extra_repr(self) -> str:
        return f'channels={self.channels}, kernel_sizes={self.kernel_sizes}'
