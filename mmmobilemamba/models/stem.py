"""The stem: four stride-2 3x3 Conv-BNs, stride 16 (docs/architecture.md#stem).

Channels 3 -> C0/8 -> C0/4 -> C0/2 -> C0 (integer division), ReLU between the
convolutions and none after the last.
"""
import torch
import torch.nn as nn

from .bricks import ConvBN


class Stem(nn.Module):
    """Patch embedding of stride 16.

    Args:
        in_channels (int): Image channels. Defaults to 3.
        out_channels (int): C0.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        widths = [in_channels, out_channels // 8, out_channels // 4,
                  out_channels // 2, out_channels]
        if min(widths[1:]) < 1:
            raise ValueError(f'stem width {out_channels} is too small: it '
                             'must be >= 8 (the first conv has C0 // 8)')
        self.convs = nn.ModuleList(
            ConvBN(cin, cout, 3, stride=2)
            for cin, cout in zip(widths[:-1], widths[1:]))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < last:
                x = self.act(x)
        return x
