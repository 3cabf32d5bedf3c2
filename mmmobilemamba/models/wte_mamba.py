"""WTE-Mamba: wavelet-enhanced Mamba (docs/architecture.md#wte-mamba).

The global branch of MRFFI. It adds to the SS2D output (long-range,
full resolution) a high-frequency-aware term computed in the Haar wavelet
domain::

    out = base_scale * SS2D(x) + IWT(wavelet_scale * DWConv_k(WT(x)))

WT/IWT are the one-level Haar transform and its exact inverse
(:mod:`mmmobilemamba.ops.wavelet`); all four sub-bands share one depthwise
k x k convolution ("same" padding). Odd sizes are padded by the transform and
cropped back, so the output always has the input's size.
"""
import torch
import torch.nn as nn

from mmmobilemamba.ops.wavelet import HaarWavelet2d
from .ss2d import SS2D


class WTEMamba(nn.Module):
    """Wavelet-transform-enhanced Mamba on ``channels`` channels.

    Args:
        channels (int): Channels Cg.
        kernel_size (int): Kernel of the wavelet-domain depthwise conv.
        ssm_ratio (float): SS2D expansion. Defaults to 2.
        d_state (int): SS2D state size. Defaults to 1.
        wavelet_scale_init (float): Initial per-band scale. Defaults to 0.1.
        base_scale_init (float): Initial scale of the SS2D term. Defaults to
            1.0.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 ssm_ratio: float = 2,
                 d_state: int = 1,
                 wavelet_scale_init: float = 0.1,
                 base_scale_init: float = 1.0) -> None:
        super().__init__()
        self.channels = channels
        self.ss2d = SS2D(channels, ssm_ratio=ssm_ratio, d_state=d_state)
        self.base_scale = nn.Parameter(
            torch.full((1, channels, 1, 1), float(base_scale_init)))
        self.wavelet = HaarWavelet2d(channels)
        # padding='same' as the release: also what the FLOP convention of
        # docs/architecture.md#flops uses (mmengine leaves this conv out).
        self.wavelet_conv = nn.Conv2d(4 * channels, 4 * channels,
                                      kernel_size, padding='same',
                                      groups=4 * channels, bias=False)
        self.wavelet_scale = nn.Parameter(
            torch.full((1, 4 * channels, 1, 1), float(wavelet_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = self.wavelet.dwt(x)
        bands = self.wavelet_conv(bands) * self.wavelet_scale
        detail = self.wavelet.idwt(bands, size=x.shape[-2:])
        return self.base_scale * self.ss2d(x) + detail
