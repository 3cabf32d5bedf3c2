"""Deploy forms that are fast at batch 1: what ``switch_to_deploy`` /
``fuse_bn`` / ``deploy=True`` produce, and that they compute the same
function as the unfused model (fp32, relative 1e-5) at batch 1 and 8 and at
odd sizes."""
import copy

import pytest
import torch
import torch.nn as nn

from mmmobilemamba.models import MobileMamba, fuse_bn
from mmmobilemamba.models.bricks import (ChannelAffine, ConvBN,
                                         PointwiseConv2d, SqueezeExcite)
from mmmobilemamba.ops.wavelet import HaarWavelet2d
from ..helpers import randomize_norms, rel_err

TOL = 1e-5  # relative, fp32


def _is_depthwise_1x1_conv(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
            and m.groups > 1 and m.groups == m.in_channels)


def _types(model: nn.Module) -> dict:
    return {name: type(m) for name, m in model.named_modules()}


def _randomized_t2(**kwargs):
    torch.manual_seed(0)
    model = randomize_norms(MobileMamba('T2', out_indices=(0, 1, 2, 3),
                                        **kwargs)).eval()
    with torch.no_grad():  # the zero/one-initialised scales too
        for name, p in model.named_parameters():
            if name.endswith(('wavelet_scale', 'base_scale')):
                p.uniform_(0.5, 1.5)
    return model


def test_switch_to_deploy_produces_the_deploy_forms():
    model = _randomized_t2(local_kernel_sizes=((3, 5), 5, 3))
    assert any(_is_depthwise_1x1_conv(m) for m in model.modules())
    fused = fuse_bn(copy.deepcopy(model))
    assert not any(_is_depthwise_1x1_conv(m) for m in fused.modules())
    convbns = [m for m in fused.modules() if isinstance(m, ConvBN)]
    affine = [m for m in convbns if isinstance(m.conv, ChannelAffine)]
    pointwise = [m for m in convbns if isinstance(m.conv, PointwiseConv2d)]
    assert len(affine) == 5  # one per MK-DeConv (5 blocks in T2)
    assert all(isinstance(m.conv, (ChannelAffine, PointwiseConv2d))
               for m in convbns if m.conv.kernel_size == (1, 1))
    # per block: 2 FFNs, MRFFI's projection, SS2D's in/out projections;
    # per downsampling: 2 FFNs, PatchMerging's expansion and projection
    assert len(pointwise) == 5 * (4 + 1 + 2) + 2 * (4 + 2)
    assert all(m.deploy for m in fused.modules()
               if isinstance(m, (SqueezeExcite, HaarWavelet2d)))
    # deploy=True builds exactly the same modules, and the fused state_dict
    # loads strictly into it
    built = MobileMamba('T2', out_indices=(0, 1, 2, 3), deploy=True,
                        local_kernel_sizes=((3, 5), 5, 3)).eval()
    assert _types(built) == _types(fused)
    built.load_state_dict(fused.state_dict(), strict=True)
    assert not any(_is_depthwise_1x1_conv(m) for m in built.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(built(x), model(x)):
            assert rel_err(a, b) < TOL


@pytest.mark.parametrize('batch,size', [(1, (192, 192)), (8, (64, 64)),
                                        (1, (97, 75)), (8, (67, 83))])
def test_fused_backbone_matches_unfused(batch, size):
    model = _randomized_t2()
    fused = fuse_bn(copy.deepcopy(model))
    x = torch.rand(batch, 3, *size, generator=torch.Generator()
                   .manual_seed(batch))
    with torch.no_grad():
        for a, b in zip(fused(x), model(x)):
            assert a.shape == b.shape
            assert rel_err(a, b) < TOL
        # samples stay independent in the batched matrix products
        single = fused(x[-1:])
        for a, b in zip(single, fused(x)):
            assert rel_err(a[0], b[-1]) < TOL


@pytest.mark.parametrize('batch', [1, 8])
@pytest.mark.parametrize('size', [(3, 3), (6, 5), (1, 1)])
def test_pointwise_and_channel_affine_bricks(batch, size):
    x = torch.randn(batch, 12, *size)
    for groups, cout in ((1, 20), (12, 12)):
        m = randomize_norms(ConvBN(12, cout, 1, groups=groups)).eval()
        with torch.no_grad():
            ref = m(x)
            m.switch_to_deploy()
            expected = ChannelAffine if groups > 1 else PointwiseConv2d
            assert type(m.conv) is expected
            assert rel_err(m(x), ref) < TOL
            # the non-contiguous input the SS2D's chunk produces
            wide = torch.cat([x, x], 1)[:, :12]
            assert rel_err(m(wide), ref) < TOL


def test_pointwise_reads_and_writes_channels_last():
    m = PointwiseConv2d(8, 4, 1)
    x = torch.randn(2, 8, 5, 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = m(x)
        assert rel_err(y, nn.functional.conv2d(x, m.weight, m.bias)) < TOL
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('batch', [1, 8])
def test_squeeze_excite_linear_form(batch):
    torch.manual_seed(0)
    m = SqueezeExcite(16).eval()
    x = torch.randn(batch, 16, 3, 5)
    with torch.no_grad():
        ref = m(x)
        m.switch_to_deploy()
        assert rel_err(m(x), ref) < TOL
    assert sorted(m.state_dict()) == ['fc1.bias', 'fc1.weight', 'fc2.bias',
                                      'fc2.weight']


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('size', [(12, 12), (7, 9), (1, 1), (6, 5)])
def test_wavelet_matmul_form_matches_the_convolutions(size, channels_last):
    """The token-major deploy form: same values, NCHW or channels-last in;
    on channels-last input its outputs are channels-last views."""
    x = torch.randn(2, 5, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv, fast = HaarWavelet2d(5), HaarWavelet2d(5, deploy=True)
    bands = conv.dwt(x)
    fast_bands = fast.dwt(x)
    assert fast_bands.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(fast_bands, bands) < 1e-6
    assert rel_err(fast.idwt(bands, size), conv.idwt(bands, size)) < 1e-6
    assert rel_err(fast.idwt(fast_bands, size), x) < 1e-6


def test_unfused_model_keeps_the_flop_convention_modules():
    """Training and FLOP counting see the release's ops: convolutions, not
    the deploy forms."""
    model = MobileMamba('T2')
    assert not any(isinstance(m, (ChannelAffine, PointwiseConv2d))
                   for m in model.modules())
    assert not any(m.deploy for m in model.modules()
                   if isinstance(m, (SqueezeExcite, HaarWavelet2d)))


# --- delegate forms: what torch.export (ExecuTorch / XNNPACK) traces -------

def _with_decays(model):
    with torch.no_grad():  # A_logs start at 0: give the decays a spread
        for name, p in model.named_parameters():
            if name.endswith('A_logs'):
                p.uniform_(-1., 1.5)
    return model


@pytest.mark.parametrize('batch,size', [(1, (97, 75)), (8, (67, 45)),
                                        (1, (33, 32))])
def test_delegate_forms_match_the_training_form(batch, size):
    """The fused backbone traced for torch.export (its forms run eagerly
    under ``forms_of``) against the unfused training form, default scan."""
    from mmmobilemamba.models.ss2d import set_scan_backend
    from mmmobilemamba.ops.export_forms import forms_of
    model = _with_decays(_randomized_t2())
    fused = fuse_bn(copy.deepcopy(model))
    set_scan_backend(fused, 'export')
    x = torch.rand(batch, 3, *size, generator=torch.Generator()
                   .manual_seed(batch))
    with torch.no_grad():
        ref = model(x)
        with forms_of('torch.export'):
            got = fused(x)
    for a, b in zip(got, ref):
        assert a.shape == b.shape
        assert rel_err(a, b) < TOL


@pytest.mark.parametrize('d_state', [1, 3])
@pytest.mark.parametrize('batch', [1, 8])
def test_ss2d_delegate_form_matches_training_form(d_state, batch):
    from mmmobilemamba.models.ss2d import SS2D
    from mmmobilemamba.ops.export_forms import forms_of
    torch.manual_seed(d_state)
    m = _with_decays(randomize_norms(SS2D(24, d_state=d_state))).eval()
    x = torch.randn(batch, 24, 7, 5)
    with torch.no_grad():
        ref = m(x)
        m.scan_backend = 'export'
        with forms_of('torch.export'):
            got = m(x)
    assert rel_err(got, ref) < TOL


@pytest.mark.parametrize('size', [(7, 9), (6, 5), (1, 1)])
def test_wavelet_grouped_form_matches_the_convolutions(size):
    from mmmobilemamba.ops.export_forms import forms_of
    x = torch.randn(2, 5, *size)
    conv, fast = HaarWavelet2d(5), HaarWavelet2d(5, deploy=True)
    bands = conv.dwt(x)
    with forms_of('torch.export'):
        assert rel_err(fast.dwt(x), bands) < 1e-6
        assert rel_err(fast.idwt(bands, size), conv.idwt(bands, size)) < 1e-6


def test_channel_affine_and_squeeze_excite_delegate_forms():
    from mmmobilemamba.ops.export_forms import forms_of
    torch.manual_seed(0)
    x = torch.randn(2, 16, 3, 5)
    se = SqueezeExcite(16).eval()
    affine = randomize_norms(ConvBN(16, 16, 1, groups=16)).eval()
    with torch.no_grad():
        refs = se(x), affine(x)
        se.switch_to_deploy()
        affine.switch_to_deploy()
        with forms_of('torch.export'):
            got = se(x), affine(x)
    for a, b in zip(got, refs):
        assert rel_err(a, b) < TOL


#: Operators XNNPACK does not take, which the delegate forms avoid.
_NOT_DELEGATED = ('layer_norm', 'softplus', 'split', 'chunk', 'select',
                  'sum', 'mm', 'addmm', 'addcmul', 'unsqueeze', 'expand',
                  'log1p', 'where', 'gt', 'zeros_like', 'full_like',
                  'convolution_backward', 'conv_transpose')


@pytest.mark.parametrize('size', [(12, 10), (2, 2)])
def test_exported_graph_uses_the_delegate_forms(size):
    """torch.export of a fused MRFFI (SS2D, wavelet, local branch, split),
    with the weight-only operators folded as the ExecuTorch route does: none
    of the operators XNNPACK lacks is left; eager mode keeps the training
    forms."""
    pytest.importorskip('executorch')
    from mmmobilemamba.deploy.xnnpack import fold_constants
    from mmmobilemamba.models.mrffi import MRFFI
    from mmmobilemamba.models.ss2d import set_scan_backend
    from mmmobilemamba.ops.export_forms import delegate_forms
    torch.manual_seed(0)
    m = fuse_bn(randomize_norms(MRFFI(32, 3, 0.5, 0.25)))
    set_scan_backend(m, 'export')
    x = torch.randn(1, 32, *size)
    assert not delegate_forms()
    with torch.no_grad():
        program = fold_constants(torch.export.export(m, (x, ), strict=False))
        ref = m(x)
        got = program.module()(x)
    ops = {str(n.target).split('.')[1] for n in program.graph.nodes
           if n.op == 'call_function'}
    assert not ops & set(_NOT_DELEGATED), ops & set(_NOT_DELEGATED)
    assert rel_err(got, ref) < TOL
