"""Conv-BN, FFN, DW, squeeze-excite, PatchMerging, DropPath."""
import pytest
import torch

from mmmobilemamba.models import (FFN, ConvBN, DropPath, DWConv, PatchMerging,
                                  ResidualDWConv, SqueezeExcite)
from ..helpers import randomize_norms, rel_err


def test_convbn_keys_and_init():
    m = ConvBN(4, 8, 3, bn_weight_init=0.)
    assert sorted(m.state_dict()) == [
        'bn.bias', 'bn.num_batches_tracked', 'bn.running_mean',
        'bn.running_var', 'bn.weight', 'conv.weight'
    ]
    assert m.conv.bias is None and m.conv.padding == (1, 1)
    assert torch.all(m.bn.weight == 0)
    assert torch.all(m(torch.randn(2, 4, 5, 5)) == 0)


def test_fused_convbn_is_equivalent():
    from mmmobilemamba.deploy import convert
    m = randomize_norms(ConvBN(6, 6, 3, stride=2, groups=3)).eval()
    x = torch.randn(2, 6, 9, 7)
    fused = convert(m, 'fused')
    assert sorted(fused.state_dict()) == ['conv.bias', 'conv.weight']
    assert rel_err(fused(x), m(x)) < 1e-6


def test_ffn_starts_as_zero_and_has_hidden_ratio():
    m = FFN(8, 2)
    assert m.pw1.conv.out_channels == 16
    assert torch.all(m(torch.randn(1, 8, 3, 3)) == 0)


def test_dwconv_is_depthwise_3x3():
    m = DWConv(12)
    assert m.conv.groups == 12 and m.conv.kernel_size == (3, 3)
    assert torch.all(m.bn.weight == 1)
    assert torch.all(DWConv(12, bn_weight_init=0.).bn.weight == 0)


def test_squeeze_excite_reduces_4c_to_c_and_gates():
    m = SqueezeExcite(64, 0.25)
    assert m.fc1.out_channels == 16 and m.fc2.out_channels == 64
    x = torch.randn(2, 64, 5, 5)
    gate = torch.sigmoid(m.fc2(torch.relu(m.fc1(x.mean((2, 3), True)))))
    torch.testing.assert_close(m(x), x * gate)
    with pytest.raises(ValueError, match='reduction 0.01 leaves no hidden'):
        SqueezeExcite(8, 0.01)


@pytest.mark.parametrize('size,out', [((12, 12), (6, 6)), ((7, 9), (4, 5)),
                                      ((1, 1), (1, 1))])
def test_patch_merging_shapes(size, out):
    m = PatchMerging(16, 24).eval()
    assert m.se.fc1.in_channels == 64 and m.se.fc1.out_channels == 16
    y = m(torch.randn(2, 16, *size))
    assert y.shape == (2, 24, *out)


def test_drop_path():
    x = torch.ones(64, 3, 2, 2)
    m = DropPath(0.5)
    assert m.eval()(x) is x
    y = m.train()(x)
    per_sample = y.flatten(1)
    # each sample is either dropped entirely or scaled by 1 / keep
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    with pytest.raises(ValueError, match='drop_prob must be in \\[0, 1\\), '
                       'got 1.0'):
        DropPath(1.0)


def test_residual_dwconv_folds_its_identity_when_fused():
    from mmmobilemamba.deploy import convert
    m = randomize_norms(ResidualDWConv(6)).eval()
    x = torch.randn(2, 6, 5, 7)
    ref = m(x)
    plain = DWConv(6)
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(ref, x + plain.eval()(x))
    fused = convert(m, 'fused')
    assert sorted(fused.state_dict()) == ['conv.bias', 'conv.weight']
    assert rel_err(fused(x), ref) < 1e-6
    # a zero-initialised one starts as the identity
    assert torch.equal(ResidualDWConv(6, bn_weight_init=0.)(x), x)
