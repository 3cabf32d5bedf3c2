"""WTE-Mamba: SS2D plus the wavelet-domain branch."""
import pytest
import torch

from mmmobilemamba.models import WTEMamba


def test_layout_and_initial_scales():
    m = WTEMamba(112, 7)
    assert m.wavelet_conv.weight.shape == (448, 1, 7, 7)
    assert m.wavelet_conv.padding == 'same' and m.wavelet_conv.bias is None
    assert m.wavelet_scale.shape == (1, 448, 1, 1)
    assert torch.all(m.wavelet_scale == 0.1)
    assert m.base_scale.shape == (1, 112, 1, 1)
    assert torch.all(m.base_scale == 1)
    # the Haar filters are constants, not checkpoint entries
    assert not any('wavelet.dec' in k or 'wavelet.rec' in k
                   for k in m.state_dict())


@pytest.mark.parametrize('size', [(6, 8), (5, 7)])
def test_identity_wavelet_conv_reconstructs_the_input(size):
    """With a centred delta kernel and unit scale, the wavelet branch is
    IWT(WT(x)) = x exactly, odd sizes included (padded, then cropped)."""
    m = WTEMamba(16, 3).eval().double()
    with torch.no_grad():
        m.wavelet_conv.weight.zero_()
        m.wavelet_conv.weight[:, :, 1, 1] = 1
        m.wavelet_scale.fill_(1)
        m.base_scale.fill_(0.5)
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    out = m(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out - 0.5 * m.ss2d(x), x)


def test_zero_wavelet_scale_leaves_the_scan_term():
    m = WTEMamba(16, 5).eval()
    with torch.no_grad():
        m.wavelet_scale.zero_()
        m.base_scale.fill_(2.)
    x = torch.randn(1, 16, 7, 6)
    torch.testing.assert_close(m(x), 2. * m.ss2d(x))
