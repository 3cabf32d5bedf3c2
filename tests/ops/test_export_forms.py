"""The export target switch and the delegate forms of the export scan:
softplus stable at any |x|, the bidirectional scan equal to the reference
(N = 1 and N > 1, batch 1 and 8, odd lengths, dt*|A| up to 200)."""
import pytest
import torch
import torch.nn.functional as F

from mmmobilemamba.ops import export_forms
from mmmobilemamba.ops.export_forms import (delegate_forms, export_target,
                                            forms_of)
from mmmobilemamba.ops.selective_scan import selective_scan_bidirectional
from mmmobilemamba.ops.selective_scan.export_scan import \
    softplus_delegate_form


def test_target_is_none_in_eager_mode_and_forced_by_forms_of():
    assert export_target() is None and not delegate_forms()
    with forms_of('onnx'):
        assert export_target() == 'onnx'
        with forms_of('torch.export'):
            assert delegate_forms()
        assert export_target() == 'onnx'
        assert delegate_forms() == ('onnx' in
                                    export_forms.DELEGATE_FORM_TARGETS)
    assert export_target() is None


def test_unknown_target_is_refused():
    with pytest.raises(ValueError, match='unknown export target'):
        with forms_of('tflite'):
            pass


def test_softplus_form_is_exact_and_stable():
    x = torch.cat([torch.linspace(-100., 100., 20001),
                   torch.tensor([-1e30, -1e4, 1e4, 1e30])])
    got = softplus_delegate_form(x)
    ref = F.softplus(x.double(), threshold=1000.)
    assert torch.isfinite(got).all()
    # absolute error at most that of rounding 1 + exp(-|x|) (2^-24), plus
    # float32 rounding of the result
    err = (got.double() - ref).abs() - 2.**-23 * ref.abs()
    assert err.max().item() <= 2.**-24 + 1e-12
    assert (got >= 0).all()


def _scan_inputs(batch, dim, n_state, length, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, length, generator=g)
    delta = torch.randn(batch, 2, dim, length, generator=g) * 3
    delta[:, :, 0] = 25.  # softplus(25 + bias) * 8 is about 200 per step
    A = -torch.rand(2 * dim, n_state, generator=g) * 8
    A[0] = A[dim] = -8.
    B = torch.randn(batch, 2, n_state, length, generator=g)
    C = torch.randn(batch, 2, n_state, length, generator=g)
    D = torch.randn(2 * dim, generator=g)
    bias = torch.rand(2 * dim, generator=g)
    return u, delta, A, B, C, D, bias


@pytest.mark.parametrize('n_state', [1, 3])
@pytest.mark.parametrize('batch,length', [(1, 37), (8, 9), (1, 1)])
def test_bidirectional_delegate_form_matches_reference(batch, length,
                                                       n_state):
    u, delta, A, B, C, D, bias = _scan_inputs(batch, 5, n_state, length,
                                              seed=length)
    ref = selective_scan_bidirectional(
        *(t.double() for t in (u, delta, A, B, C, D)),
        delta_bias=bias.double(), delta_softplus=True, backend='ref')
    with forms_of('torch.export'):
        got = selective_scan_bidirectional(u, delta, A, B, C, D,
                                           delta_bias=bias,
                                           delta_softplus=True,
                                           backend='export')
    plain = selective_scan_bidirectional(u, delta, A, B, C, D,
                                         delta_bias=bias,
                                         delta_softplus=True,
                                         backend='export')
    assert torch.isfinite(got).all()
    scale = ref.abs().max()
    assert ((got.double() - ref).abs().max() / scale).item() < 1e-5
    assert ((got - plain).abs().max() / scale).item() < 1e-5
