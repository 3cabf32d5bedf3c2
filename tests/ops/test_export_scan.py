"""The 'export' backend's chunked scan: against a sequential loop in fp64
and fp32, at step decays dt*|A| up to 200, at every chunk size, and as an
ONNX graph of standard ops."""
import pytest
import torch

from mmmobilemamba.ops.selective_scan import (selective_scan,
                                              selective_scan_bidirectional)
from mmmobilemamba.ops.selective_scan.export_scan import (chunk_length,
                                                          chunked_scan)


def _sequential(logs, x):
    h = torch.zeros_like(x[..., 0])
    out = []
    for t in range(x.shape[-1]):
        h = torch.exp(logs[..., t]) * h + x[..., t]
        out.append(h)
    return torch.stack(out, -1)


def _rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('length', [1, 2, 3, 9, 16, 36, 37, 144, 257])
@pytest.mark.parametrize('max_decay', [0.01, 1., 200.])
def test_chunked_scan_matches_the_loop(length, max_decay):
    g = torch.Generator().manual_seed(length)
    logs = -torch.rand(3, 4, length, generator=g, dtype=torch.float64)
    logs = logs * max_decay
    x = torch.randn(3, 4, length, generator=g, dtype=torch.float64)
    ref = _sequential(logs, x)
    for chunk in {None, 1, 2, 5, length}:
        assert _rel(chunked_scan(logs, x, chunk), ref) < 1e-12
    got = chunked_scan(logs.float(), x.float())
    assert torch.isfinite(got).all()
    assert _rel(got, ref) < 1e-5


def test_mixed_decays_in_one_chunk_do_not_cancel():
    """A chunk that starts with steps of decay 200 and continues with tiny
    ones: running sums of log-decays are large there, and taking their
    differences would lose the small decays to rounding in fp32."""
    length = 64
    logs = torch.full((2, length), -1e-3, dtype=torch.float64)
    logs[:, :20] = -200.
    logs[1, 40] = 0.
    x = torch.randn(2, length, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    ref = _sequential(logs, x)
    got = chunked_scan(logs.float(), x.float(), chunk=length)
    assert _rel(got, ref) < 1e-6


def test_chunk_length_is_about_sqrt():
    assert [chunk_length(n) for n in (1, 9, 36, 144, 150, 1024)] == [
        1, 3, 6, 12, 13, 32]


@pytest.fixture(params=['doubling', 'chunked'])
def formulation(request, monkeypatch):
    from mmmobilemamba.ops.selective_scan import export_scan
    monkeypatch.setattr(export_scan, 'EXPORT_SCAN', request.param)
    return request.param


@pytest.mark.parametrize('length', [9, 144, 150])
def test_bidirectional_export_matches_reference_at_decay_200(length,
                                                             formulation):
    g = torch.Generator().manual_seed(0)
    batch, dim = 2, 3
    u = torch.randn(batch, dim, length, generator=g)
    delta = torch.rand(batch, 2, dim, length, generator=g) * 20
    A = -torch.rand(2 * dim, 1, generator=g) * 10
    A[0] = A[dim] = -10.
    delta[:, :, 0] = 20.  # exactly 200 per step on channel 0
    B = torch.randn(batch, 2, 1, length, generator=g)
    C = torch.randn(batch, 2, 1, length, generator=g)
    D = torch.randn(2 * dim, generator=g)
    args = (u, delta, A, B, C, D)
    ref = selective_scan_bidirectional(
        *(a.double() for a in args), delta_softplus=False, backend='ref')
    got = selective_scan_bidirectional(*args, delta_softplus=False,
                                       backend='export')
    assert torch.isfinite(got).all()
    assert _rel(got, ref) < 1e-5
    # and the single-direction public function
    y = selective_scan(u, delta[:, 0], A[:dim], B[:, 0], C[:, 0], D[:dim],
                       backend='export')
    y_ref = selective_scan(u.double(), delta[:, 0].double(),
                           A[:dim].double(), B[:, 0].double(),
                           C[:, 0].double(), D[:dim].double(), backend='ref')
    assert _rel(y, y_ref) < 1e-5


def test_onnx_graph_is_small_and_standard(tmp_path, monkeypatch):
    """An SS2D with the export scan lowers to standard ops, with no Pad per
    doubling level, and onnxruntime reproduces PyTorch."""
    ort = pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    from mmmobilemamba.models.ss2d import SS2D, set_scan_backend
    from mmmobilemamba.ops.selective_scan import export_scan
    monkeypatch.setattr(export_scan, 'EXPORT_SCAN', 'chunked')
    torch.manual_seed(0)
    m = SS2D(16).eval()
    set_scan_backend(m, 'export')
    x = torch.randn(1, 16, 12, 12)
    path = str(tmp_path / 'ss2d.onnx')
    with torch.no_grad():
        torch.onnx.export(m, (x, ), path, dynamo=False, opset_version=17,
                          input_names=['input'], output_names=['out'])
        set_scan_backend(m, 'ref')
        ref = m(x).numpy()
    graph = onnx.load(path).graph
    ops = [n.op_type for n in graph.node]
    assert {n.domain for n in graph.node} <= {'', 'ai.onnx'}
    assert 'CumSum' in ops and 'Softplus' in ops
    assert ops.count('Pad') <= 2  # L = 144 = 12 chunks of 12: one carry pad
    out, = ort.InferenceSession(
        path, providers=['CPUExecutionProvider']).run(None,
                                                      {'input': x.numpy()})
    assert abs(out - ref).max() <= 1e-5 * max(1., abs(ref).max())
