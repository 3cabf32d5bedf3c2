"""One-level 2-D Haar wavelet transform and its inverse, per channel.

The four 2x2 analysis filters are built from PyWavelets' ``'db1'`` filter
bank (the Haar wavelet), so the numbers come from the reference library
rather than being typed in. For Haar they are, with ``s = 1/2``::

    LL = s [[1, 1], [ 1,  1]]      b1 = s [[1,  1], [-1, -1]]
    b2 = s [[1, -1], [1, -1]]      b3 = s [[1, -1], [-1,  1]]

The forward transform is a stride-2 grouped convolution that turns ``C``
channels into ``4C``, keeping each input channel's four sub-bands together
(output channel ``4c + band``, band order LL, b1, b2, b3). The inverse is the
transposed convolution with the same filters; because the filter bank is
orthonormal it reconstructs the input exactly (up to float rounding).

An odd height or width is padded with one zero row/column at the bottom/right
before the forward transform; :func:`haar_idwt2d` crops back when given the
original size.

Only torch and PyWavelets are needed.
"""
from typing import Optional, Sequence, Tuple

import pywt
import torch
import torch.nn as nn
import torch.nn.functional as F


def _subband_channels(y: torch.Tensor) -> int:
    """C of a (B, 4C, h, w) sub-band tensor; a clear error otherwise."""
    if y.shape[1] % 4:
        raise ValueError(f'sub-band tensor must have 4 * C channels, got '
                         f'{y.shape[1]}')
    return y.shape[1] // 4


def haar_filters(dtype: torch.dtype = torch.float32,
                 device: Optional[torch.device] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Analysis and synthesis filters of the one-level 2-D Haar transform.

    Args:
        dtype (torch.dtype): Filter dtype. Defaults to torch.float32.
        device (torch.device, optional): Filter device. Defaults to None.

    Returns:
        tuple[Tensor, Tensor]: ``(dec, rec)``, each of shape (4, 1, 2, 2) in
        band order LL, b1, b2, b3. ``dec`` is used as a stride-2 convolution,
        ``rec`` as the matching stride-2 transposed convolution.
    """
    wavelet = pywt.Wavelet('db1')
    # PyWavelets stores filters for convolution; reversing them gives the
    # correlation kernels that torch's conv2d applies.
    dec_lo = torch.tensor(wavelet.dec_lo[::-1], dtype=torch.float64)
    dec_hi = torch.tensor(wavelet.dec_hi[::-1], dtype=torch.float64)
    rec_lo = torch.tensor(wavelet.rec_lo, dtype=torch.float64)
    rec_hi = torch.tensor(wavelet.rec_hi, dtype=torch.float64)

    def bank(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        # (row filter, column filter) per band: LL, b1 (rows high-pass),
        # b2 (columns high-pass), b3 (both).
        pairs = ((lo, lo), (hi, lo), (lo, hi), (hi, hi))
        bands = [r[:, None] * c[None, :] for r, c in pairs]
        return torch.stack(bands)[:, None]

    dec = bank(dec_lo, dec_hi)
    rec = bank(rec_lo, rec_hi)
    return dec.to(dtype=dtype, device=device), rec.to(dtype=dtype,
                                                        device=device)


def haar_dwt2d(x: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
    """Forward transform: (B, C, H, W) -> (B, 4C, ceil(H/2), ceil(W/2)).

    Args:
        x (Tensor): Input, (B, C, H, W).
        dec (Tensor): Analysis filters, (4, 1, 2, 2) or already repeated per
            channel, (4C, 1, 2, 2).

    Returns:
        Tensor: Sub-bands, channel ``4c + band``.
    """
    channels = x.shape[1]
    if dec.shape[0] == 4 and channels != 1:
        dec = dec.repeat(channels, 1, 1, 1)
    if dec.shape[0] != 4 * channels:
        raise ValueError(f'filters have {dec.shape[0]} outputs, expected '
                         f'4 * {channels} channels = {4 * channels}')
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return F.conv2d(x, dec.to(x.dtype), stride=2, groups=channels)


def haar_idwt2d(y: torch.Tensor,
                rec: torch.Tensor,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Inverse transform: (B, 4C, h, w) -> (B, C, 2h, 2w), cropped to size.

    Args:
        y (Tensor): Sub-bands in the layout :func:`haar_dwt2d` produces.
        rec (Tensor): Synthesis filters, (4, 1, 2, 2) or (4C, 1, 2, 2).
        size (Sequence[int], optional): Original (H, W) to crop back to
            (undoes the odd-size padding). Defaults to None (no crop).

    Returns:
        Tensor: (B, C, H, W).
    """
    channels = _subband_channels(y)
    if rec.shape[0] == 4 and channels != 1:
        rec = rec.repeat(channels, 1, 1, 1)
    if rec.shape[0] != 4 * channels:
        raise ValueError(f'filters have {rec.shape[0]} inputs, expected '
                         f'{4 * channels}')
    x = F.conv_transpose2d(y, rec.to(y.dtype), stride=2, groups=channels)
    if size is not None:
        x = x[..., :size[0], :size[1]]
    return x


def haar_matrices(dtype: torch.dtype = torch.float32
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (4, 4) analysis matrix (band x tap, tap = 2 i + j of the 2x2
    patch) and the transposed synthesis matrix (tap x band) that the
    matrix-product and grouped forms below take."""
    dec, rec = haar_filters(dtype)
    return dec.reshape(4, 4).clone(), rec.reshape(4, 4).t().contiguous()


def register_haar_matrices(module: nn.Module) -> None:
    """Give a :class:`HaarWavelet2d` the matrices of :func:`haar_matrices`
    as buffers ``dec_mix`` and ``rec_mix_t`` (constants like its filters:
    not in the state_dict), for its inference forms."""
    for name, value in zip(('dec_mix', 'rec_mix_t'),
                           haar_matrices(module.dec.dtype)):
        module.register_buffer(name, value.to(module.dec.device),
                               persistent=False)


def haar_dwt2d_matmul(x: torch.Tensor, dec_mix: torch.Tensor
                      ) -> torch.Tensor:
    """:func:`haar_dwt2d` as one 4x4 matrix product per 2x2 patch and
    channel, token-major (the deploy form: the grouped stride-2 convolution
    is a loop over channels in PyTorch's CPU fallback).

    Each channel's 2x2 patch is gathered as the last dim of a (B, H/2, W/2,
    C, 4) tensor (one copy; a view of the input's data when it is
    channels-last), multiplied by the 4x4 matrix, and returned as a
    channels-last (B, 4C, H/2, W/2) view: channel 4c + band is exactly
    that tensor's memory order, so nothing else is copied.

    Args:
        x (Tensor): Input, (B, C, H, W).
        dec_mix (Tensor): (4, 4) analysis matrix, band x tap, tap = 2 i + j
            of the 2x2 patch (``dec.view(4, 4)`` of :func:`haar_filters`).

    Returns:
        Tensor: Sub-bands, (B, 4C, ceil(H/2), ceil(W/2)), channel 4c + band.
    """
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    b, c, h, w = x.shape
    taps = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c).permute(
        0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, c, 4)
    bands = torch.matmul(taps, dec_mix.t().to(x.dtype))
    return bands.view(b, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)


def haar_idwt2d_matmul(y: torch.Tensor,
                       rec_mix_t: torch.Tensor,
                       size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """:func:`haar_idwt2d` as one 4x4 matrix product per position and
    channel, token-major (the deploy form); the inverse of
    :func:`haar_dwt2d_matmul`'s layout: a channels-last input is read
    without a copy and the result is a channels-last view.

    Args:
        y (Tensor): Sub-bands, (B, 4C, h, w).
        rec_mix_t (Tensor): (4, 4) synthesis matrix, tap x band
            (``rec.view(4, 4).t()``).
        size (Sequence[int], optional): (H, W) to crop back to.

    Returns:
        Tensor: (B, C, H, W).
    """
    c = _subband_channels(y)
    b, _, h, w = y.shape
    bands = y.permute(0, 2, 3, 1).reshape(b, h, w, c, 4)
    taps = torch.matmul(bands, rec_mix_t.t().to(y.dtype))  # tap = 2 i + j
    x = taps.view(b, h, w, c, 2, 2).permute(0, 1, 4, 2, 5, 3).reshape(
        b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    if size is not None:
        x = x[..., :size[0], :size[1]]
    return x


def haar_idwt2d_grouped(y: torch.Tensor,
                        rec_mix_t: torch.Tensor,
                        size: Optional[Sequence[int]] = None
                        ) -> torch.Tensor:
    """:func:`haar_idwt2d` as a grouped 1x1 convolution (the 4x4 synthesis
    matrix, one group per channel) and a pixel-shuffle: the form a delegate
    takes (XNNPACK has no transposed convolution, and the batched 4x4
    product of :func:`haar_idwt2d_matmul` lowers with broadcast copies).
    The crop is left out where it would take nothing.

    Args:
        y (Tensor): Sub-bands, (B, 4C, h, w).
        rec_mix_t (Tensor): (4, 4) synthesis matrix, tap x band.
        size (Sequence[int], optional): (H, W) to crop back to.

    Returns:
        Tensor: (B, C, H, W).
    """
    _subband_channels(y)
    b, c4, h, w = y.shape
    weight = rec_mix_t.to(y.dtype).repeat(c4 // 4, 1).reshape(c4, 4, 1, 1)
    x = F.pixel_shuffle(F.conv2d(y, weight, groups=c4 // 4), 2)
    if size is not None and (size[0] < 2 * h or size[1] < 2 * w):
        x = x[..., :size[0], :size[1]]
    return x


class HaarWavelet2d(nn.Module):
    """Holds the Haar filter bank of ``channels`` channels as buffers.

    The filters are constants, not parameters: they are kept as
    non-persistent buffers, so they follow ``.to()``/``.half()`` but are
    neither trained, counted as parameters, nor written to checkpoints.
    This is the form that trains (grouped and transposed convolutions); the
    inference forms (:mod:`mmmobilemamba.deploy.forms`) compute the same
    transform with the matrix-product and grouped-1x1 functions above.

    Args:
        channels (int): Number of input channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f'channels must be >= 1, got {channels}')
        self.channels = channels
        dec, rec = haar_filters()
        self.register_buffer('dec', dec.repeat(channels, 1, 1, 1),
                             persistent=False)
        self.register_buffer('rec', rec.repeat(channels, 1, 1, 1),
                             persistent=False)

    def dwt(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 4C, ceil(H/2), ceil(W/2))."""
        return haar_dwt2d(x, self.dec)

    def idwt(self, y: torch.Tensor,
             size: Optional[Sequence[int]] = None) -> torch.Tensor:
        """(B, 4C, h, w) -> (B, C, H, W), cropped to ``size`` if given."""
        return haar_idwt2d(y, self.rec, size)

    def extra_repr(self) -> str:
        return f'channels={self.channels}, wavelet=db1'
