"""Haar wavelet transform: filters from PyWavelets, exact round trip."""
import numpy as np
import pytest
import pywt
import torch

from mmmobilemamba.ops.wavelet import (HaarWavelet2d, haar_dwt2d, haar_filters,
                                       haar_idwt2d)


def test_filters_are_the_haar_bank():
    dec, rec = haar_filters(torch.float64)
    half = 0.5
    expected = half * torch.tensor(
        [[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]],
         [[1, -1], [-1, 1]]], dtype=torch.float64)[:, None]
    assert dec.shape == (4, 1, 2, 2)
    torch.testing.assert_close(dec, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(rec, expected, rtol=0, atol=1e-15)


def test_subbands_match_pywavelets():
    """Our sub-bands are PyWavelets' dwt2 coefficients: LL = approximation,
    b1 = horizontal, b2 = vertical, b3 = diagonal detail."""
    rng = np.random.default_rng(0)
    image = rng.standard_normal((6, 10))
    ll, (ch, cv, cd) = pywt.dwt2(image, 'db1')
    ours = haar_dwt2d(torch.from_numpy(image)[None, None],
                      haar_filters(torch.float64)[0])[0].numpy()
    for band, ref in enumerate((ll, ch, cv, cd)):
        np.testing.assert_allclose(ours[band], ref, atol=1e-12)


@pytest.mark.parametrize('size', [(8, 8), (7, 9), (1, 1), (6, 5)])
def test_round_trip_is_exact(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    wavelet = HaarWavelet2d(3).double()
    bands = wavelet.dwt(x)
    assert bands.shape == (2, 12, (size[0] + 1) // 2, (size[1] + 1) // 2)
    back = wavelet.idwt(bands, size=size)
    assert back.shape == x.shape
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)


def test_channel_layout_keeps_subbands_together():
    """Channel 4c + band holds band `band` of input channel c."""
    x = torch.zeros(1, 3, 4, 4)
    x[:, 1] = torch.randn(4, 4)
    bands = HaarWavelet2d(3).dwt(x)
    nonzero = sorted({int(c) for c in bands[0].nonzero()[:, 0]})
    assert nonzero == [4, 5, 6, 7]


def test_odd_input_is_zero_padded_bottom_right():
    x = torch.ones(1, 1, 3, 3)
    ll = HaarWavelet2d(1).dwt(x)[0, 0]
    # The bottom/right cells see one padded row/column of zeros.
    torch.testing.assert_close(ll, torch.tensor([[2., 1.], [1., .5]]))


def test_filters_are_buffers_not_parameters_or_checkpoint_keys():
    wavelet = HaarWavelet2d(5)
    assert list(wavelet.parameters()) == []
    assert wavelet.state_dict() == {}
    assert wavelet.dec.shape == (20, 1, 2, 2)
    assert wavelet.half().dec.dtype == torch.float16


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='channels must be >= 1, got 0'):
        HaarWavelet2d(0)
    dec, rec = haar_filters()
    with pytest.raises(ValueError, match='4 \\* C channels, got 6'):
        haar_idwt2d(torch.zeros(1, 6, 2, 2), rec)
    with pytest.raises(ValueError, match='expected 4 \\* 3 channels'):
        haar_dwt2d(torch.zeros(1, 3, 2, 2), dec.repeat(2, 1, 1, 1))
