"""MRFFI: three channel groups, identity untouched, zero-initialised
projection."""
import torch

from mmmobilemamba.models import MRFFI


def test_groups_and_projection():
    m = MRFFI(144, 7, 0.8, 0.2)
    assert tuple(m.split) == (112, 28, 4)
    assert m.global_op.channels == 112
    assert m.local_op.channels == 28
    assert torch.all(m.proj.bn.weight == 0)
    assert torch.all(m(torch.randn(1, 144, 6, 6)) == 0)


def test_identity_group_is_passed_through_unchanged():
    m = MRFFI(144, 7, 0.8, 0.2).eval()
    seen = {}
    m.proj.register_forward_pre_hook(
        lambda mod, args: seen.update(x=args[0]))
    x = torch.randn(2, 144, 5, 6)
    m(x)
    # the projection receives ReLU(concat[global, local, identity])
    torch.testing.assert_close(seen['x'][:, -4:], torch.relu(x[:, -4:]),
                               rtol=0, atol=0)


def test_empty_identity_group():
    m = MRFFI(176, 7, 0.8, 0.2)  # T4 stage 1: 144 / 32 / 0
    assert m.split.identity_channels == 0
    assert m(torch.randn(1, 176, 4, 4)).shape == (1, 176, 4, 4)


def test_multi_kernel_option_reaches_the_local_branch():
    m = MRFFI(144, (3, 5, 7), 0.8, 0.2)
    assert m.local_op.kernel_sizes == (3, 5, 7)
    assert m.global_op.wavelet_conv.kernel_size == (3, 3)
