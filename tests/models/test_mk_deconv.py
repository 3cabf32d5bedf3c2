"""MK-DeConv: the release's one-kernel form and the true multi-kernel
option, both fusable."""
import pytest
import torch

from mmmobilemamba.models import MKDeConv
from ..helpers import randomize_norms, rel_err


def test_release_form_is_one_depthwise_kernel_then_per_channel_1x1():
    m = MKDeConv(28, 7)
    assert len(m.spatial) == 1
    assert m.spatial[0].conv.weight.shape == (28, 1, 7, 7)
    assert m.channel.conv.weight.shape == (28, 1, 1, 1)
    assert m.spatial[0].conv.bias is None


def test_multi_kernel_splits_channels_over_kernel_sizes():
    m = MKDeConv(10, (3, 5, 7)).eval()
    assert m.splits == [4, 3, 3]
    assert [s.conv.weight.shape for s in m.spatial] == [
        (4, 1, 3, 3), (3, 1, 5, 5), (3, 1, 7, 7)
    ]
    # an impulse spreads over k x k in each slice (its receptive field)
    x = torch.zeros(1, 10, 9, 9)
    x[..., 4, 4] = 1.
    with torch.no_grad():
        for s in m.spatial:
            s.conv.weight.fill_(1.)
        parts = torch.split(x, m.splits, dim=1)
        spread = [(s.conv(p)[0, 0] != 0).sum().item()
                  for s, p in zip(m.spatial, parts)]
    assert spread == [9, 25, 49]


@pytest.mark.parametrize('kernels', [5, (3, 5), (3, 5, 7)])
def test_fusion_equivalence(kernels):
    m = randomize_norms(MKDeConv(12, kernels)).eval()
    x = torch.randn(2, 12, 7, 8)
    ref = m(x)
    from mmmobilemamba.deploy import convert
    for target in ('fused', 'eager-cpu', 'onnx'):
        fused = convert(m, target)
        assert not any('bn' in k for k in fused.state_dict())
        assert rel_err(fused(x), ref) < 1e-5


def test_bad_kernels_raise():
    with pytest.raises(ValueError,
                       match='odd positive integers, got \\(4,\\)'):
        MKDeConv(8, 4)
    with pytest.raises(ValueError, match='need at least as many channels'):
        MKDeConv(2, (3, 5, 7))
