"""The packed-weight linear of the deploy 1x1 layers."""
import gc

import pytest
import torch
import torch.nn.functional as F

from mmmobilemamba.ops import packed_linear
from mmmobilemamba.ops.packed_linear import linear, packed_count, uses_packed

needs_onednn = pytest.mark.skipif(not packed_linear._AVAILABLE,
                                  reason='torch built without oneDNN')


@pytest.mark.parametrize('rows', [1, 9, 37])
@pytest.mark.parametrize('conv_shaped', [True, False])
def test_equals_f_linear(rows, conv_shaped):
    g = torch.Generator().manual_seed(rows)
    weight = torch.randn(48, 20, generator=g)
    if conv_shaped:
        weight = weight[:, :, None, None].clone()
    bias = torch.randn(48, generator=g)
    x = torch.randn(rows, 20, generator=g)
    want = F.linear(x, weight.flatten(1), bias)
    with torch.inference_mode():
        torch.testing.assert_close(linear(x, weight, bias), want, rtol=1e-5,
                                   atol=1e-5)
        # a non-contiguous x (the token view of a channels-first map)
        xt = x.t().contiguous().t()
        torch.testing.assert_close(linear(xt, weight, bias), want, rtol=1e-5,
                                   atol=1e-5)
    torch.testing.assert_close(linear(x, weight, bias), want, rtol=1e-5,
                               atol=1e-5)


@needs_onednn
def test_repacks_after_the_weight_changes_and_frees_with_it():
    weight = torch.nn.Parameter(torch.randn(16, 8))
    x = torch.randn(3, 8)
    before = packed_count()
    with torch.inference_mode():
        first = linear(x, weight, None)
        assert packed_count() == before + 1
        assert uses_packed(x, weight)
        weight.mul_(2)  # in place: the packed copy must follow
        torch.testing.assert_close(linear(x, weight, None), 2 * first)
    del weight
    gc.collect()
    assert packed_count() == before


@needs_onednn
def test_gradients_use_the_plain_product():
    weight = torch.nn.Parameter(torch.randn(6, 4))
    x = torch.randn(5, 4)
    assert not uses_packed(x, weight)
    linear(x, weight, None).sum().backward()
    torch.testing.assert_close(weight.grad, x.sum(0).expand(6, 4))
    with torch.no_grad():
        assert uses_packed(x, weight)
        assert not uses_packed(x.double(), weight.double())
        # a computed weight (e.g. a LoRA parametrization) is never packed
        assert not uses_packed(x, weight * 1)
