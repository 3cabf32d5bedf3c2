"""The selective scan's FLOP handle in mmengine's FlopAnalyzer."""
import pytest
import torch
import torch.nn as nn

from mmmobilemamba.ops import complexity
from mmmobilemamba.ops.scan import (available_backends, selective_scan,
                                    selective_scan_bidirectional)

analysis = pytest.importorskip('mmengine.analysis',
                               reason='mmengine is not installed')
complexity_analysis = pytest.importorskip(
    'mmengine.analysis.complexity_analysis')


class _OneScan(nn.Module):

    def __init__(self, backend='torch'):
        super().__init__()
        self.backend = backend

    def forward(self, u, delta, A, B, C, D):
        return selective_scan(u, delta, A, B, C, D, delta_softplus=True,
                              backend=self.backend)


class _TwoScans(nn.Module):
    """A one-direction scan and SS2D's two-direction scan, plus a matmul
    that mmengine counts by itself."""

    def forward(self, u, delta, A, B, C, delta2, A2, B2, C2, w):
        y = selective_scan(u, delta, A, B, C, backend='torch')
        y2 = selective_scan_bidirectional(u, delta2, A2, B2, C2,
                                          backend='torch')
        return (y + y2).transpose(1, 2) @ w


def _inputs(batch=2, dim=6, length=10, n_state=3):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (r(batch, dim, length), r(batch, dim, length),
            -torch.rand(dim, n_state, generator=g), r(batch, n_state, length),
            r(batch, n_state, length), r(batch, 2, dim, length),
            -torch.rand(2 * dim, 1, generator=g), r(batch, 2, 1, length),
            r(batch, 2, 1, length), r(dim, 5))


def _total(model, inputs, with_handle: bool, monkeypatch=None) -> int:
    if not with_handle:  # as if the handles had never been registered
        monkeypatch.delitem(complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS,
                            complexity.SCAN_OP)
    analyzer = analysis.FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total()


def test_formula():
    assert complexity.scan_flops(2, 10, 6, 3) == 9 * 2 * 10 * 6 * 3 + 120


def test_handles_are_registered_at_import():
    table = complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS
    assert table[complexity.SCAN_OP] is complexity.scan_flop_jit


def test_count_with_handle_minus_without_is_the_formula(monkeypatch):
    inputs = _inputs()
    batch, dim, length = inputs[0].shape
    with_h = _total(_TwoScans(), inputs, with_handle=True)
    without = _total(_TwoScans(), inputs, False, monkeypatch)
    expected = (complexity.scan_flops(batch, length, dim, 3) +
                complexity.scan_flops(batch, length, 2 * dim, 1))
    assert with_h - without == expected
    assert without == batch * length * dim * 5  # the matmul alone


@pytest.mark.parametrize('backend', [
    b for b in ('cpp', 'torch') if b in available_backends('cpu')])
def test_scan_traces_as_one_op_counted_the_same_by_every_backend(backend):
    """FlopAnalyzer relies on the scan being a single traced node; every
    backend that implements the op is the same node, so the same count."""
    inputs = _inputs()[:5] + (torch.ones(6), )
    model = _OneScan(backend)
    graph = torch.jit.trace(model, inputs, check_trace=False).graph
    kinds = [n.kind() for n in graph.nodes()]
    assert kinds.count(complexity.SCAN_OP) == 1
    assert _total(model, inputs, True) == complexity.scan_flops(2, 10, 6, 3)
