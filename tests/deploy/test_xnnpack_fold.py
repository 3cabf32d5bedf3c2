"""fold_constants: weight-only operators become constants, and the int8
weights of a quantized program stay int8 behind their dequantize nodes."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip('executorch')


class _Regrouped(nn.Module):
    """A 1x1 conv whose weight is computed from a parameter (as the
    delegate forms do), followed by a plain conv."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, 8))
        self.conv = nn.Conv2d(6, 4, 3)

    def forward(self, x):
        weight = torch.cat([self.w[:, :1].reshape(2, 8),
                            self.w[:, 1:].reshape(4, 8)])
        return self.conv(F.conv2d(x, weight[:, :, None, None].float()))


def _call_targets(program):
    return [str(n.target) for n in program.graph.nodes
            if n.op == 'call_function']


def test_weight_only_ops_fold_and_values_hold():
    from mmmobilemamba.deploy.xnnpack import fold_constants
    m = _Regrouped().eval()
    x = torch.randn(1, 8, 7, 5)
    with torch.no_grad():
        program = fold_constants(torch.export.export(m, (x, ),
                                                     strict=False))
        assert torch.allclose(program.module()(x), m(x), atol=1e-6)
    targets = _call_targets(program)
    assert not any(t.split('.')[1] in ('cat', 'slice', 'view', 'reshape',
                                       'unsqueeze') for t in targets), targets
    assert sum('conv' in t for t in targets) == 2


def test_int8_weights_stay_quantized():
    from torchao.quantization.pt2e.quantize_pt2e import (convert_pt2e,
                                                         prepare_pt2e)

    from mmmobilemamba.deploy.xnnpack import _quantizer, fold_constants
    m = _Regrouped().eval()
    x = torch.randn(1, 8, 7, 5)
    with torch.no_grad():
        prepared = prepare_pt2e(
            torch.export.export(m, (x, ), strict=False).module(),
            _quantizer())
        prepared(x)
        converted = convert_pt2e(prepared)
        program = fold_constants(torch.export.export(converted, (x, ),
                                                     strict=False))
    targets = _call_targets(program)
    assert any('dequantize_per_channel' in t for t in targets), targets
    int8 = [t for t in list(program.state_dict.values()) +
            list(program.constants.values())
            if isinstance(t, torch.Tensor) and t.dtype == torch.int8]
    assert int8, 'the quantized conv weights were folded to float'
