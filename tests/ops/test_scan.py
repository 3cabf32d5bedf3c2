"""Selective scan: every backend against the fp64 reference, the portable
form's recurrence and ONNX graph, and the interface's errors.

The reference (``backend='ref'``, a plain loop) runs in fp64 on the same
(already rounded) inputs; the backend under test runs in the inputs' dtype.
Outputs and all input gradients are compared by relative error (max abs
difference over the reference's max abs value). The Triton kernels run in
triton's CPU interpreter, in a subprocess (``_triton_interpret_check.py``).
The operator, the table and the fallbacks are tested in ``test_scan_op.py``.
"""
import ast
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmmobilemamba.ops.scan import (available_backends, default_backend,
                                    selective_scan,
                                    selective_scan_bidirectional)
from mmmobilemamba.ops.scan import torch_scan
from mmmobilemamba.ops.scan.linear_recurrence import _plan, linear_scan_
from mmmobilemamba.ops.scan.portable import doubling_scan, softplus

#: Backends testable in this process (triton needs CUDA or the interpreter).
BACKENDS = [b for b in available_backends('cpu') if b != 'ref']
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 4e-3,
       torch.bfloat16: 3e-2}
NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_inputs(batch, dim, length, n_state, groups=None, z=False,
                dtype=torch.float32, seed=0, large_decay=False):
    """Named scan inputs; ``large_decay`` gives delta*|A| up to 200."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa
    bc = (batch, n_state, length) if groups is None else (batch, groups,
                                                          n_state, length)
    ins = dict(u=r(batch, dim, length), delta=r(batch, dim, length) * 0.5,
               A=-torch.rand(dim, n_state, generator=g,
                             dtype=torch.float64) * 2,
               B=r(*bc), C=r(*bc), D=r(dim), z=r(batch, dim, length) if z
               else None, delta_bias=r(dim) * 0.1)
    if large_decay:  # used without softplus: dt in [0, 20], |A| in [0, 10]
        ins['delta'] = torch.rand(batch, dim, length, generator=g,
                                  dtype=torch.float64) * 20
        ins['A'] = -torch.rand(dim, n_state, generator=g,
                               dtype=torch.float64) * 10
        ins['A'][0, 0] = -10.
        ins['delta'][0, 0, :] = 20.  # exactly 200 per step on channel 0
        ins['delta_bias'] = None
    return {k: None if v is None else v.to(dtype) for k, v in ins.items()}


def run(ins, backend, dtype=None, softplus=True, last=False, seed=1):
    """Outputs and gradients (of a random projection of the outputs)."""
    xs = {k: None if v is None else
          v.detach().clone().to(dtype or v.dtype).requires_grad_()
          for k, v in ins.items()}
    outs = selective_scan(*(xs[k] for k in NAMES), softplus, last,
                          backend=backend)
    outs = outs if isinstance(outs, tuple) else (outs, )
    g = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=g,
                                         dtype=torch.float64)).sum()
               for o in outs)
    present = [k for k in NAMES if xs[k] is not None]
    grads = torch.autograd.grad(loss, [xs[k] for k in present])
    return outs, dict(zip(present, grads))


def rel(got, ref):
    return ((got.double() - ref.double()).abs().max() /
            ref.double().abs().max().clamp_min(1e-12)).item()


def assert_matches_ref(ins, backend, softplus=True, last=False, tol=None):
    dtype = ins['u'].dtype
    tol = tol or TOL[dtype]
    outs, grads = run(ins, backend, softplus=softplus, last=last)
    ref_outs, ref_grads = run(ins, 'ref', torch.float64, softplus, last)
    pairs = [(f'out{i}', o, r) for i, (o, r) in enumerate(zip(outs,
                                                              ref_outs))]
    pairs += [(f'd{k}', grads[k], ref_grads[k]) for k in ref_grads]
    for name, got, ref in pairs:
        want = ins[name[1:]].dtype if name.startswith('d') else dtype
        assert got.dtype == want, (name, got.dtype)
        assert got.shape == ref.shape, name
        assert torch.isfinite(got).all(), f'{name} has NaN/inf'
        err = rel(got, ref)
        assert err < tol, f'{backend} {name}: relative error {err:.2e}'


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('n_state', [1, 16])
@pytest.mark.parametrize('length', [1, 2, 7, 64, 255, 1024])
def test_matches_reference(backend, length, n_state):
    # The reference's backward costs O(L^2) per channel: keep L=1024 small.
    batch, dim = (2, 4) if length < 1024 else (1, 2)
    ins = make_inputs(batch, dim, length, n_state, seed=length)
    assert_matches_ref(ins, backend)


@pytest.mark.parametrize('backend', BACKENDS)
def test_wide_rows_match_reference(backend):
    """44 channels, 150 steps: the compiled kernel copies 8x8 blocks of
    channels x steps through register transposes and the rest (4 channels,
    the last 6 steps of the third tile) one by one; both directions."""
    ins = make_inputs(1, 44, 150, 1, z=True, seed=21)
    assert_matches_ref(ins, backend, last=True)
    bi = make_bi_inputs(1, 44, 150, 1, seed=22)
    for a, b in zip(run_bi(bi, backend), run_bi(bi, 'ref', torch.float64)):
        assert rel(a, b) < 1e-4


@pytest.mark.parametrize('backend', BACKENDS)
def test_long_sequence(backend):
    ins = make_inputs(1, 2, 4096, 1, seed=7)
    assert_matches_ref(ins, backend)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('groups', [None, 1, 3, 6])
def test_grouped_bc_gate_and_last_state(backend, groups):
    ins = make_inputs(2, 6, 37, 2, groups=groups, z=True, seed=3)
    assert_matches_ref(ins, backend, last=True)


@pytest.mark.parametrize('backend', BACKENDS)
def test_grouped_single_state(backend):
    """Grouped B/C with N = 1: the portable form's 4-D path."""
    ins = make_inputs(2, 6, 20, 1, groups=3, z=True, seed=15)
    assert_matches_ref(ins, backend, last=True)


@pytest.mark.parametrize('backend', BACKENDS)
def test_without_optional_inputs(backend):
    ins = make_inputs(2, 4, 19, 3, seed=4)
    ins.update(D=None, delta_bias=None)
    assert_matches_ref(ins, backend, softplus=False, last=True)


@pytest.mark.parametrize('backend', BACKENDS)
def test_large_decay_is_finite_and_exact(backend):
    """delta*|A| up to 200 per step: the state is reset, never NaN/inf."""
    ins = make_inputs(2, 3, 200, 4, seed=5, large_decay=True)
    assert_matches_ref(ins, backend, softplus=False, last=True)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('softplus', [False, True])
def test_inputs_are_not_modified(backend, softplus):
    """Kernels may work in place on temporaries, never on the inputs
    (without delta_bias, dt is delta itself)."""
    ins = make_inputs(2, 4, 30, 1, z=True, seed=14)
    ins['delta_bias'] = None
    before = {k: v.clone() for k, v in ins.items() if v is not None}
    run(ins, backend, softplus=softplus, last=True)
    xs = [ins[k] for k in NAMES[:5]]
    bi = selective_scan_bidirectional(
        xs[0], torch.stack([xs[1], xs[1]], 1), torch.cat([xs[2]] * 2),
        torch.stack([xs[3]] * 2, 1), torch.stack([xs[4]] * 2, 1),
        delta_softplus=softplus, backend=backend)
    assert torch.isfinite(bi).all()
    for k, v in before.items():
        assert torch.equal(ins[k], v), k


@pytest.mark.parametrize('backend', BACKENDS)
def test_samples_are_independent(backend):
    ins = make_inputs(3, 4, 50, 2, z=True, seed=6)
    together = selective_scan(*(ins[k] for k in NAMES), True,
                              backend=backend)
    for i in range(3):
        one = {k: v if k in ('A', 'D', 'delta_bias') else v[i:i + 1]
               for k, v in ins.items()}
        alone = selective_scan(*(one[k] for k in NAMES), True,
                               backend=backend)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5,
                                   atol=1e-5)
    # The gradient of sample 0's output reaches no other sample.
    xs = {k: v.clone().requires_grad_() for k, v in ins.items()}
    y = selective_scan(*(xs[k] for k in NAMES), True, backend=backend)
    y[0].sum().backward()
    for k in ('u', 'delta', 'B', 'C', 'z'):
        assert xs[k].grad[1:].abs().max() == 0, k
        assert xs[k].grad[0].abs().max() > 0, k


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_inputs(backend, dtype):
    """fp16/bf16 in, fp32 accumulation, output and gradients in the input
    dtype."""
    ins = make_inputs(2, 8, 200, 1, z=True, dtype=dtype, seed=8)
    assert_matches_ref(ins, backend, last=True)


@pytest.mark.parametrize('backend', BACKENDS)
def test_gradcheck(backend):
    ins = make_inputs(2, 4, 9, 2, groups=2, z=True, dtype=torch.float64,
                      seed=9)
    xs = [ins[k].requires_grad_() for k in NAMES]

    def fn(*args):
        return selective_scan(*args, True, True, backend=backend)

    assert torch.autograd.gradcheck(fn, xs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('backend', BACKENDS)
def test_second_backward_gives_the_same_gradients(backend):
    """A second backward pass (retain_graph=True) recomputes what it needs
    and gets the same gradients."""
    xs = {k: v.requires_grad_()
          for k, v in make_inputs(2, 6, 50, 2, z=True).items()}
    y, last = selective_scan(*xs.values(), True, True, backend=backend)
    loss = (y * torch.randn_like(y)).sum() + last.square().sum()
    first = torch.autograd.grad(loss, list(xs.values()), retain_graph=True)
    second = torch.autograd.grad(loss, list(xs.values()))
    for name, a, b in zip(xs, first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


# --- two directions (SS2D) ----------------------------------------------


def make_bi_inputs(batch, dim, length, n_state, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa
    ins = [r(batch, dim, length), r(batch, 2, dim, length) * 0.5,
           -torch.rand(2 * dim, n_state, generator=g, dtype=torch.float64),
           r(batch, 2, n_state, length), r(batch, 2, n_state, length),
           r(2 * dim), r(2 * dim) * 0.1]
    return [t.to(dtype) for t in ins]


def run_bi(ins, backend, dtype=None):
    xs = [t.detach().clone().to(dtype or t.dtype).requires_grad_()
          for t in ins]
    y = selective_scan_bidirectional(*xs, delta_softplus=True,
                                     backend=backend)
    g = torch.Generator().manual_seed(11)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((y.double() * gy).sum(), xs)
    return [y] + list(grads)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('length,n_state', [(1, 1), (7, 1), (64, 1),
                                            (255, 1), (1024, 1), (33, 16)])
def test_bidirectional_matches_reference(backend, length, n_state):
    ins = make_bi_inputs(2, 4, length, n_state, seed=length)
    got = run_bi(ins, backend)
    ref = run_bi(ins, 'ref', torch.float64)
    for name, a, b in zip(('y', 'du', 'ddelta', 'dA', 'dB', 'dC', 'dD',
                           'ddelta_bias'), got, ref):
        assert a.dtype == torch.float32 and a.shape == b.shape, name
        err = rel(a, b)
        assert err < 1e-4, f'{name}: relative error {err:.2e}'


@pytest.mark.parametrize('backend', BACKENDS)
def test_bidirectional_is_forward_plus_flipped_backward(backend):
    """Direction 1 equals a one-direction scan of the reversed sequence."""
    u, delta, A, B, C, D, bias = make_bi_inputs(2, 3, 20, 2, seed=12)
    y = selective_scan_bidirectional(u, delta, A, B, C, D, bias,
                                     backend=backend)
    f = lambda t: t.flip(-1)  # noqa: E731
    y0 = selective_scan(u, delta[:, 0], A[:3], B[:, 0], C[:, 0], D[:3],
                        None, bias[:3], True, backend=backend)
    y1 = selective_scan(f(u), f(delta[:, 1]), A[3:], f(B[:, 1]), f(C[:, 1]),
                        D[3:], None, bias[3:], True, backend=backend)
    torch.testing.assert_close(y, y0 + f(y1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('backend', BACKENDS)
def test_bidirectional_large_decay(backend):
    """Steps of decay 200 in both directions, without softplus."""
    g = torch.Generator().manual_seed(0)
    batch, dim, length = 2, 3, 150
    u, delta, A, B, C, D, _ = make_bi_inputs(batch, dim, length, 1)
    delta = torch.rand(batch, 2, dim, length, generator=g) * 20
    A = -torch.rand(2 * dim, 1, generator=g) * 10
    A[0] = A[dim] = -10.
    delta[:, :, 0] = 20.  # exactly 200 per step on channel 0
    args = (u, delta, A, B, C, D)
    ref = selective_scan_bidirectional(*(a.double() for a in args),
                                       delta_softplus=False, backend='ref')
    got = selective_scan_bidirectional(*args, delta_softplus=False,
                                       backend=backend)
    assert torch.isfinite(got).all() and rel(got, ref) < 1e-5


def token_major(t: torch.Tensor) -> torch.Tensor:
    """``t`` (..., d, L) stored as (..., L, d): what flattening a
    channels-last map gives SS2D."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('length', [9, 150])
def test_token_major_inputs(backend, length):
    """u, delta and z laid out token-major (the compiled kernels read any
    strides without a copy) give the contiguous inputs' results, in the
    forward and in every gradient; 40 channels leave a partial block."""
    ins = make_inputs(2, 40, length, 1, groups=2, z=True, seed=length)
    outs, grads = run(ins, backend, last=True)
    strided = {k: token_major(v) if k in ('u', 'delta', 'z') else v
               for k, v in ins.items()}
    assert not strided['u'].is_contiguous()
    s_outs, s_grads = run(strided, backend, last=True)
    for a, b in zip(outs, s_outs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for k in grads:
        torch.testing.assert_close(grads[k], s_grads[k], rtol=1e-6,
                                   atol=1e-6, msg=k)
    bi = make_bi_inputs(1, 40, length, 1, seed=length)
    y = selective_scan_bidirectional(*bi, backend=backend)
    bi[0], bi[1] = token_major(bi[0]), token_major(bi[1])
    with torch.no_grad():  # the eager-inference path
        y_strided = selective_scan_bidirectional(*bi, backend=backend)
    torch.testing.assert_close(y, y_strided, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('backend', BACKENDS)
def test_bidirectional_gradcheck(backend):
    ins = [t.requires_grad_()
           for t in make_bi_inputs(2, 3, 8, 2, torch.float64, seed=13)]

    def fn(*args):
        return selective_scan_bidirectional(*args, delta_softplus=True,
                                            backend=backend)

    assert torch.autograd.gradcheck(fn, ins, eps=1e-6, atol=1e-6)


# --- the 'torch' row's slabs, kept scratch and recurrence core -------------


@pytest.mark.parametrize('slab', [64, 700, 5000])
@pytest.mark.parametrize('groups', [None, 3])
def test_torch_row_slabs_agree_with_reference(monkeypatch, slab, groups):
    """Tiny slabs split the problem by channels (64), by groups (700) and
    by samples (5000); every split must give the reference's values."""
    monkeypatch.setattr(torch_scan, 'SLAB_ELEMENTS', slab)
    ins = make_inputs(3, 12, 37, 2, groups=groups, z=True)
    assert_matches_ref(ins, 'torch', last=True)
    bi = make_bi_inputs(3, 12, 37, 1)
    for got, ref in zip(run_bi(bi, 'torch'), run_bi(bi, 'ref',
                                                    torch.float64)):
        assert rel(got, ref) < TOL[torch.float32]


def test_scratch_hands_out_cached_views_of_kept_buffers_only(monkeypatch):
    """A scratch view is cached per (name, shape) while its buffer is kept;
    growing a buffer or exceeding KEEP_BYTES drops the old views, so no
    memory is held that ``workspace_bytes`` does not report."""
    scratch = torch_scan._Scratch(torch.float32, torch.device('cpu'))
    small = scratch('x', (2, 5))
    assert scratch('x', (2, 5)) is small and scratch.nbytes() == 40
    grown = scratch('x', (4, 5))  # a larger buffer replaces the old one
    assert scratch('x', (2, 5)).data_ptr() == grown.data_ptr()
    assert scratch.nbytes() == 80
    monkeypatch.setattr(torch_scan, 'KEEP_BYTES', 100)
    huge = scratch('x', (10, 5))  # 200 bytes: handed out, not kept
    assert huge.shape == (10, 5)
    assert scratch.nbytes() == 0 and not scratch.views


def test_torch_row_scratch_is_reused_not_returned():
    """Scratch kept between calls never leaks into results: a later call
    of another shape leaves an earlier output untouched, and values stay
    right after the scratch has grown or been released."""
    torch_scan.release_workspace()
    assert torch_scan.workspace_bytes() == 0
    small = make_inputs(2, 8, 50, 1, seed=1)
    large = make_inputs(4, 16, 300, 1, seed=2)
    args = lambda ins: [ins[k] for k in NAMES]  # noqa: E731
    y_small = selective_scan(*args(small), True, backend='torch')
    kept = y_small.clone()
    kept_bytes = torch_scan.workspace_bytes()
    assert kept_bytes > 0
    y_large = selective_scan(*args(large), True, backend='torch')
    assert torch_scan.workspace_bytes() > kept_bytes  # grown
    torch.testing.assert_close(y_small, kept, rtol=0, atol=0)
    again = selective_scan(*args(small), True, backend='torch')
    torch.testing.assert_close(again, kept, rtol=0, atol=0)
    torch_scan.release_workspace()
    assert torch_scan.workspace_bytes() == 0
    torch.testing.assert_close(
        selective_scan(*args(large), True, backend='torch'), y_large,
        rtol=0, atol=0)


def _recurrence(a, x, reverse):
    expected = x.clone()
    length = x.shape[-1]
    for t in range(length - 2, -1, -1) if reverse else range(1, length):
        prev = t + 1 if reverse else t - 1
        expected[..., t] += a[..., t] * expected[..., prev]
    return expected


@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('rows', [6, 4096])
@pytest.mark.parametrize('length', [1, 2, 3, 5, 8, 9, 31, 100, 257])
def test_linear_scan_core(length, rows, reverse):
    g = torch.Generator().manual_seed(length)
    a = torch.rand(rows // 2, 2, length, generator=g, dtype=torch.float64)
    x = torch.randn(rows // 2, 2, length, generator=g, dtype=torch.float64)
    a[0, 0, length // 2] = 0.  # a decay that underflowed: a reset
    got = linear_scan_(a, x.clone(), reverse=reverse)
    torch.testing.assert_close(got, _recurrence(a, x, reverse), rtol=1e-12,
                               atol=1e-12)


def test_linear_scan_plans_cover_both_paths():
    """The cases above run both the chunked and the step-by-step path."""
    assert _plan(257, 4)[0] > 0 and _plan(31, 4)[0] > 0
    assert _plan(8, 4)[0] == 0


# --- the portable form ----------------------------------------------------


@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('length', [1, 2, 3, 5, 8, 9, 31, 100, 257])
def test_doubling_scan_is_the_recurrence(length, reverse):
    g = torch.Generator().manual_seed(length)
    a = torch.rand(3, 2, length, generator=g, dtype=torch.float64)
    x = torch.randn(3, 2, length, generator=g, dtype=torch.float64)
    a[0, 0, length // 2] = 0.  # a decay that underflowed: a reset
    torch.testing.assert_close(doubling_scan(a, x, reverse),
                               _recurrence(a, x, reverse), rtol=1e-12,
                               atol=1e-12)


def test_softplus_form_is_exact_and_never_overflows():
    x = torch.linspace(-200, 200, 40001, dtype=torch.float64)
    ref = torch.nn.functional.softplus(x, threshold=1000)
    assert (softplus(x.float()).double() - ref).abs().max() < 1e-5 * (
        1 + ref.abs().max())
    assert torch.isfinite(softplus(torch.tensor([-1e30, 1e30]))).all()


def test_onnx_graph_of_the_portable_form(tmp_path):
    """The portable two-direction scan exports to standard ONNX ops, one
    Pad pair per doubling level, and onnxruntime reproduces PyTorch."""
    ort = pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')

    class Scan(torch.nn.Module):

        def __init__(self, ins):
            super().__init__()
            self.params = torch.nn.ParameterList(
                torch.nn.Parameter(t) for t in (ins[2], ins[5], ins[6]))

        def forward(self, u, delta, B, C):
            A, D, bias = self.params
            return selective_scan_bidirectional(u, delta, A, B, C, D, bias,
                                                backend='portable')

    ins = make_bi_inputs(1, 8, 144, 1, seed=3)
    model = Scan(ins).eval()
    path = str(tmp_path / 'scan.onnx')
    feeds = dict(u=ins[0], delta=ins[1], B=ins[3], C=ins[4])
    with torch.no_grad():
        torch.onnx.export(model, tuple(feeds.values()), path, dynamo=False,
                          opset_version=17, input_names=list(feeds),
                          output_names=['y'])
        ref = selective_scan_bidirectional(*ins, backend='ref').numpy()
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert {n.domain for n in onnx.load(path).graph.node} <= {'', 'ai.onnx'}
    assert 'Softplus' not in ops and ops.count('Pad') <= 4 * 8  # 2^8 > 144
    out, = ort.InferenceSession(path, providers=['CPUExecutionProvider']).run(
        None, {k: v.numpy() for k, v in feeds.items()})
    assert abs(out - ref).max() <= 1e-5 * max(1., abs(ref).max())


# --- the interface ----------------------------------------------------------


def test_default_backend_and_output_dtype():
    want = 'cpp' if 'cpp' in available_backends('cpu') else 'torch'
    assert default_backend(torch.device('cpu')) == want
    ins = make_inputs(1, 2, 5, 1, dtype=torch.bfloat16)
    y = selective_scan(*(ins[k] for k in NAMES), True)
    assert y.dtype == torch.bfloat16


def test_bad_inputs_raise_clear_errors():
    ins = make_inputs(1, 4, 6, 2)
    args = [ins[k] for k in NAMES]
    bad_A = list(args)
    bad_A[2] = args[2].abs() + 0.1
    with pytest.raises(ValueError, match='A must be <= 0'):
        selective_scan(*bad_A)
    with pytest.raises(ValueError, match='unknown selective-scan backend'):
        selective_scan(*args, backend='cuda-kernels')
    with pytest.raises(ValueError, match='B must be'):
        selective_scan(args[0], args[1], args[2], args[3][:, :1], args[4])
    with pytest.raises(ValueError, match='groups'):
        selective_scan(args[0], args[1], args[2], torch.zeros(1, 3, 2, 6),
                       torch.zeros(1, 3, 2, 6))
    with pytest.raises(ValueError, match='delta must'):
        selective_scan(args[0], args[1][..., :3], *args[2:5])
    with pytest.raises(TypeError, match='floating'):
        selective_scan(args[0].long(), *args[1:5])
    bi = make_bi_inputs(1, 2, 5, 1)
    with pytest.raises(ValueError, match='C must be'):
        selective_scan_bidirectional(*bi[:4], bi[4][:, :1])
    bi[2] = bi[2].abs()
    with pytest.raises(ValueError, match='A must be <= 0'):
        selective_scan_bidirectional(*bi)


@pytest.mark.skipif('triton' in available_backends('cpu'),
                    reason='TRITON_INTERPRET=1 is set in this process')
def test_unavailable_backend_says_why():
    ins = make_inputs(1, 2, 5, 1)
    with pytest.raises(RuntimeError, match="'triton' cannot run on cpu"):
        selective_scan(*(ins[k] for k in NAMES), backend='triton')


def test_library_never_sets_triton_interpret():
    root = osp.join(REPO, 'mmmobilemamba', 'ops', 'scan')
    for name in os.listdir(root):
        if name.endswith('.py'):
            with open(osp.join(root, name)) as f:
                src = f.read()
            assert "environ['TRITON_INTERPRET'] =" not in src, name
            assert 'environ.setdefault' not in src, name


def test_import_needs_only_torch():
    """Without triton and mmengine the package imports and says why the
    triton row cannot run."""
    code = ('import sys\n'
            'sys.modules["triton"] = None\n'
            'sys.modules["mmengine"] = None\n'
            'import torch\n'
            'from mmmobilemamba.ops.scan import available_backends\n'
            'from mmmobilemamba.ops.scan import triton_scan\n'
            'from mmmobilemamba.ops import complexity\n'
            'print(available_backends("cpu"))\n'
            'print(triton_scan.status(torch.device("cuda")))\n'
            'print("registered", complexity.register_flop_handles())\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    backends = ast.literal_eval(out.stdout.splitlines()[0])
    assert {'ref', 'torch', 'portable'} <= set(backends)
    assert 'triton' not in backends
    assert 'triton is not installed' in out.stdout
    assert 'registered False' in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('triton') is None,
                    reason='triton is not installed: the Triton kernels '
                    'cannot be checked')
def test_triton_kernels_in_interpreter():
    script = osp.join(osp.dirname(__file__), '_triton_interpret_check.py')
    env = dict(os.environ, TRITON_INTERPRET='1')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    out = subprocess.run([sys.executable, script], capture_output=True,
                         text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.count(' ok') >= 10, out.stdout
