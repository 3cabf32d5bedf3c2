"""FLOPs of the classifiers under docs/architecture.md#flops: mmengine's
FlopAnalyzer (multiply-accumulates) on the unfused model, batch 1, the scan
counted as 9*B*L*D*N + B*D*L by :mod:`mmmobilemamba.ops.complexity`, the
``padding='same'`` wavelet-domain conv left uncounted."""
import pytest
import torch
import torch.nn as nn

from ..helpers import build_classifier

pytest.importorskip('mmpretrain')
analysis = pytest.importorskip('mmengine.analysis')

# variant -> (test size, release FLOPs in M). B2 (384 px) and B4
# (512 px) are B1's network at larger inputs; tracing them takes minutes on
# two cores, so the four distinct networks are checked here.
RELEASE = {
    't2': (192, 254.7),
    't4': (192, 412.5),
    's6': (224, 652.3),
    'b1': (256, 1079.8),
}


class _Logits(nn.Module):
    """The classifier's tensor-mode forward, for tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')


@pytest.mark.parametrize('arch', [
    't2', 't4', 's6',
    pytest.param('b1', marks=pytest.mark.slow),  # the largest trace here
])
def test_flops_match_the_release_table(arch):
    import mmmobilemamba.ops.complexity  # noqa: F401  (the scan's handle)
    size, expected = RELEASE[arch]
    model = build_classifier(arch).eval()
    analyzer = analysis.FlopAnalyzer(_Logits(model),
                                     (torch.rand(1, 3, size, size), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    flops = analyzer.total() / 1e6
    assert abs(flops - expected) / expected < 0.003, (arch, flops)
    # the convention: the wavelet-domain conv (padding='same') is the only
    # convolution left uncounted, one per WTE-Mamba module
    blocks = sum(len(s.blocks) for s in model.backbone.stages)
    assert analyzer.unsupported_ops()['aten::_convolution_mode'] == blocks
