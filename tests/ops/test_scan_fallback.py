"""Default-backend fallback from the Triton kernels to the 'torch' backend.

The Triton kernels are replaced by stand-ins whose launch raises the kind
of error a failed compile raises, so the tests run anywhere (no GPU, no
triton): a default call warns once and returns the 'torch' backend's
result; a call that asked for backend='triton' raises.
"""
import functools
import warnings

import pytest
import torch

from mmmobilemamba.ops.selective_scan import fallback, triton_scan
from mmmobilemamba.ops.selective_scan.fallback import (TritonFallbackWarning,
                                                       run_with_fallback)
from mmmobilemamba.ops.selective_scan.scan_op import (scan_one_direction,
                                                      scan_two_directions)

# the two backends' public functions, as the backend table defines them
selective_scan_torch = functools.partial(scan_one_direction, backend='torch')
selective_scan_bidirectional_torch = functools.partial(scan_two_directions,
                                                       backend='torch')
selective_scan_triton = functools.partial(scan_one_direction,
                                          backend='triton')
selective_scan_bidirectional_triton = functools.partial(scan_two_directions,
                                                        backend='triton')


class CompileError(RuntimeError):
    """Looks like what triton raises when ptxas fails."""


class _Kernel:

    def __init__(self, name, kernels):
        self.name, self.kernels = name, kernels

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.kernels.calls.append(self.name)
            if self.name in self.kernels.broken:
                raise CompileError(f'PTXASError: ptxas failed on '
                                   f'{self.name} (simulated)')
            # y (forward) or du (backward): defined values
            args[8 if self.name == 'scan_fwd_kernel' else 11].zero_()
        return launch


class _Kernels:

    def __init__(self, broken):
        self.broken, self.calls = broken, []
        self.scan_fwd_kernel = _Kernel('scan_fwd_kernel', self)
        self.scan_bwd_kernel = _Kernel('scan_bwd_kernel', self)


@pytest.fixture
def kernels(monkeypatch):
    def install(*broken):
        k = _Kernels(set(broken))
        monkeypatch.setattr(triton_scan, '_KERNELS', k)
        return k
    fallback.reset()
    yield install
    fallback.reset()


def _bi_inputs(requires_grad=False):
    g = torch.Generator().manual_seed(0)
    b, d, L, n = 2, 8, 20, 1
    ins = [torch.randn(b, d, L, generator=g),
           torch.randn(b, 2, d, L, generator=g) * 0.5,
           -torch.rand(2 * d, n, generator=g),
           torch.randn(b, 2, n, L, generator=g),
           torch.randn(b, 2, n, L, generator=g),
           torch.randn(2 * d, generator=g),
           torch.randn(2 * d, generator=g) * 0.1]
    return [t.requires_grad_(requires_grad) for t in ins]


def test_default_falls_back_and_warns_once(kernels):
    k = kernels('scan_fwd_kernel')
    ins = _bi_inputs()
    want = selective_scan_bidirectional_torch(*ins, delta_softplus=True)
    with pytest.warns(TritonFallbackWarning) as rec:
        got = run_with_fallback(selective_scan_bidirectional_triton,
                                selective_scan_bidirectional_torch, False,
                                *ins, delta_softplus=True)
    torch.testing.assert_close(got, want)
    msg = str(rec[0].message)
    assert 'PTXASError: ptxas failed on scan_fwd_kernel' in msg
    assert 'report' in msg and "backend='triton'" in msg
    assert fallback.triton_failure() is not None
    # Later default calls go straight to the fallback, silently.
    n_calls = len(k.calls)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        again = run_with_fallback(selective_scan_bidirectional_triton,
                                  selective_scan_bidirectional_torch, False,
                                  *ins, delta_softplus=True)
    torch.testing.assert_close(again, want)
    assert len(k.calls) == n_calls


def test_explicit_triton_raises(kernels):
    kernels('scan_fwd_kernel')
    ins = _bi_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(CompileError, match='simulated'):
            run_with_fallback(selective_scan_bidirectional_triton,
                              selective_scan_bidirectional_torch, True,
                              *ins, delta_softplus=True)
    assert fallback.triton_failure() is None


def test_backward_failure_falls_back_for_the_gradients(kernels):
    kernels('scan_bwd_kernel')
    ins = _bi_inputs(requires_grad=True)
    y = run_with_fallback(selective_scan_bidirectional_triton,
                          selective_scan_bidirectional_torch, False, *ins,
                          delta_softplus=True)
    assert torch.equal(y, torch.zeros_like(y))  # the stand-in forward ran
    gy = torch.randn_like(y)
    with pytest.warns(TritonFallbackWarning, match='scan_bwd_kernel'):
        got = torch.autograd.grad(y, ins, gy)
    ref = [t.detach().clone().requires_grad_() for t in ins]
    want = torch.autograd.grad(
        selective_scan_bidirectional_torch(*ref, delta_softplus=True), ref,
        gy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_backward_failure_raises_when_explicit(kernels):
    kernels('scan_bwd_kernel')
    ins = _bi_inputs(requires_grad=True)
    y = run_with_fallback(selective_scan_bidirectional_triton,
                          selective_scan_bidirectional_torch, True, *ins,
                          delta_softplus=True)
    with pytest.raises(CompileError):
        y.sum().backward()


def test_working_triton_is_used_and_one_direction_keeps_tuples(kernels):
    k = kernels()  # nothing broken
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1, 4, 9, generator=g, requires_grad=True)
    args = (u, torch.rand(1, 4, 9, generator=g), -torch.rand(4, 2),
            torch.randn(1, 2, 9), torch.randn(1, 2, 9))
    y, last = run_with_fallback(selective_scan_triton, selective_scan_torch,
                                False, *args, return_last_state=True)
    assert k.calls == ['scan_fwd_kernel']
    assert y.shape == (1, 4, 9) and last.shape == (1, 4, 2)
    y.sum().backward()
    # the op's backward may re-run the forward kernel for its checkpoints
    assert k.calls[0] == 'scan_fwd_kernel' and k.calls[-1] == 'scan_bwd_kernel'
    assert set(k.calls) == {'scan_fwd_kernel', 'scan_bwd_kernel'}
    assert u.grad is not None and fallback.triton_failure() is None


def test_out_of_memory_is_not_hidden():
    fallback.reset()

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError('CUDA out of memory (simulated)')

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_with_fallback(oom, selective_scan_bidirectional_torch, False,
                          *_bi_inputs())
    assert fallback.triton_failure() is None


def test_forward_failure_with_autograd_gives_fallback_gradients(kernels):
    kernels('scan_fwd_kernel')
    ins = _bi_inputs(requires_grad=True)
    with pytest.warns(TritonFallbackWarning):
        y = run_with_fallback(selective_scan_bidirectional_triton,
                              selective_scan_bidirectional_torch, False,
                              *ins, delta_softplus=True)
    got = torch.autograd.grad(y.sum(), ins)
    ref = [t.detach().clone().requires_grad_() for t in ins]
    want = torch.autograd.grad(selective_scan_bidirectional_torch(
        *ref, delta_softplus=True).sum(), ref)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_public_api_falls_back_only_when_triton_was_the_default():
    """selective_scan_bidirectional guards the triton record: picked by
    default, a failing kernel warns and the 'torch' backend answers; asked
    for by name, the error reaches the caller."""
    import dataclasses

    from mmmobilemamba.ops.selective_scan import backends
    from mmmobilemamba.ops.selective_scan.api import \
        selective_scan_bidirectional

    def broken(*args):
        raise RuntimeError('simulated: PTX compile failed')

    original = backends.backend_table()['triton']
    stand_in = dataclasses.replace(
        original, status=lambda device: True, priority={'cpu': 99},
        one_direction=broken, two_direction=broken)
    gen = torch.Generator().manual_seed(0)
    batch, dim, length = 1, 8, 12
    u = torch.randn(batch, dim, length, generator=gen)
    delta = torch.randn(batch, 2, dim, length, generator=gen)
    A = -torch.rand(2 * dim, 1, generator=gen)
    B = torch.randn(batch, 2, 1, length, generator=gen)
    C = torch.randn(batch, 2, 1, length, generator=gen)
    fallback.reset()
    backends.register_backend(stand_in)
    try:
        assert backends.default_backend('cpu') == 'triton'
        with pytest.warns(TritonFallbackWarning, match='PTX compile failed'):
            y = selective_scan_bidirectional(u, delta, A, B, C)
        expected = selective_scan_bidirectional(u, delta, A, B, C,
                                                 backend='torch')
        torch.testing.assert_close(y, expected)
        with pytest.raises(RuntimeError, match='PTX compile failed'):
            selective_scan_bidirectional(u, delta, A, B, C, backend='triton')
    finally:
        backends.register_backend(original)
        fallback.reset()
