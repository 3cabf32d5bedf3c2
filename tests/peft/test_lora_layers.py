"""The adapter: a zero update at initialisation, the layers it supports,
and clear errors for the others."""
import pytest
import torch
import torch.nn as nn

from mmmobilemamba.models import SS2D, ConvBN
from mmmobilemamba.deploy.forms.eager_cpu import (ChannelAffine,
                                                  PointwiseConv2d)
from mmmobilemamba.peft import LoRAUpdate, add_lora, get_lora
from mmmobilemamba.peft.lora_layers import lora_tensors


def test_update_starts_at_zero_and_is_low_rank():
    update = LoRAUpdate((6, 5, 1, 1), 1, 6, 5, rank=2, alpha=4)
    weight = torch.randn(6, 5, 1, 1)
    assert torch.equal(update(weight), weight)  # B = 0
    with torch.no_grad():
        update.lora_B.normal_()
    delta = update.delta().view(6, 5)
    assert torch.linalg.matrix_rank(delta) == 2
    # scaled by alpha / rank
    expected = 2.0 * update.lora_B[0] @ update.lora_A[0]
    torch.testing.assert_close(delta, expected)


def test_conv_bn_adapter_is_the_conv_weight_and_keeps_its_output():
    torch.manual_seed(0)
    brick = ConvBN(8, 12).eval()
    x = torch.randn(2, 8, 5, 5)
    ref = brick(x)
    (owner, name), = lora_tensors(brick, 'brick')
    assert owner is brick.conv and name == 'weight'
    update = add_lora(owner, name, rank=3, alpha=3)
    assert torch.equal(brick(x), ref)
    with torch.no_grad():
        update.lora_B.normal_()
    delta = (update.lora_B[0] @ update.lora_A[0]).view(12, 8, 1, 1)
    direct = brick.bn(nn.functional.conv2d(
        x, brick.conv.parametrizations.weight.original + delta))
    torch.testing.assert_close(brick(x), direct)


def test_fused_pointwise_conv_takes_an_adapter():
    conv = PointwiseConv2d(8, 4, 1)
    add_lora(conv, 'weight', 2, 2)
    with torch.no_grad():
        get_lora(conv, 'weight').lora_B.normal_()
    x = torch.randn(1, 8, 3, 3)
    expected = nn.functional.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)


def test_ss2d_adapters_are_per_direction():
    torch.manual_seed(0)
    ss2d = SS2D(32).eval()
    x = torch.randn(1, 32, 4, 4)
    ref = ss2d(x)
    pairs = lora_tensors(ss2d, 'ss2d')
    assert [t for _, t in pairs] == ['x_proj_weight', 'dt_proj_weight']
    for owner, tensor in pairs:
        add_lora(owner, tensor, rank=1, alpha=1)
    assert torch.equal(ss2d(x), ref)
    x_lora = get_lora(ss2d, 'x_proj_weight')
    dt_lora = get_lora(ss2d, 'dt_proj_weight')
    k, c, d = ss2d.parametrizations.x_proj_weight.original.shape
    assert x_lora.lora_A.shape == (k, 1, d)
    assert x_lora.lora_B.shape == (k, c, 1)
    assert dt_lora.lora_B.shape == (k, d, 1)
    # one direction's update leaves the other direction's weights alone
    with torch.no_grad():
        x_lora.lora_B[1].normal_()
    changed = ss2d.x_proj_weight - ss2d.parametrizations.x_proj_weight.original
    assert changed[0].abs().max() == 0 and changed[1].abs().max() > 0
    assert not torch.allclose(ss2d(x), ref)


@pytest.mark.parametrize('module, match', [
    (ConvBN(8, 8, 3, groups=8), 'depthwise'),
    (nn.Conv2d(8, 8, 3, groups=4), 'depthwise'),
    (ChannelAffine(8, 8, 1, groups=8), 'depthwise'),
    (nn.BatchNorm2d(8), 'BatchNorm2d, which takes no adapter'),
    (nn.Sequential(nn.Linear(2, 2)), 'Sequential, which takes no adapter'),
])
def test_unsupported_targets_are_refused(module, match):
    with pytest.raises(TypeError, match=match):
        lora_tensors(module, 'some.name')


@pytest.mark.parametrize('rank, alpha, match', [
    (0, 1, 'rank must be an int >= 1'),
    (-2, 1, 'rank must be an int >= 1'),
    (1.5, 1, 'rank must be an int >= 1'),
    (2, 0, 'alpha must be a number > 0'),
    (9, 9, 'exceeds min\\(out, in\\) = 8'),
])
def test_bad_rank_or_alpha(rank, alpha, match):
    with pytest.raises(ValueError, match=match):
        add_lora(nn.Linear(8, 16), 'weight', rank, alpha)


def test_a_tensor_takes_one_adapter():
    linear = nn.Linear(4, 4)
    add_lora(linear, 'weight', 1, 1)
    with pytest.raises(ValueError, match='already has a LoRA adapter'):
        add_lora(linear, 'weight', 1, 1)
