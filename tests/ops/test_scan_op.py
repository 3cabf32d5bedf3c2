"""The scan operator, the backend table, the compiled CPU kernels' thread
and instruction-set independence, and the fallbacks: to the portable form
when the compiled kernels are not built, and from failing Triton kernels
to the 'torch' row.

The numerical matrix runs for every backend in ``test_scan.py``.
"""
import dataclasses
import os
import subprocess
import sys
import warnings

import pytest
import torch

from mmmobilemamba.ops.scan import (TritonFallbackWarning, available_backends,
                                    backend_table, default_backend,
                                    selective_scan,
                                    selective_scan_bidirectional)
from mmmobilemamba.ops.scan import backends, cpu, interface
from mmmobilemamba.ops.scan.interface import selective_scan_op
from .test_scan import NAMES, REPO, make_bi_inputs, make_inputs

OP_BACKENDS = [b for b in ('cpp', 'torch') if b in available_backends('cpu')]
HAS_CPP = 'cpp' in available_backends('cpu')
needs_cpp = pytest.mark.skipif(not HAS_CPP,
                               reason='the compiled CPU scan is not built')


def _op_args(case: str, dtype=torch.float32):
    """Arguments of the op in its layout, with gradients wanted."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    b, d, L = 2, 6, 9
    if case == 'two':
        K, G, N, z, last = 2, 1, 1, None, False
    elif case == 'grouped_z_last':
        K, G, N, z, last = 1, 3, 2, r(b, d, L), True
    else:
        K, G, N, z, last = 1, 1, 16, None, False
    ins = [r(b, d, L), r(b, K, d, L) * 0.5,
           -torch.rand(K, d, N, generator=g, dtype=dtype),
           r(b, K, G, N, L), r(b, K, G, N, L), r(K, d), z, r(K, d) * 0.1]
    ins = [None if t is None else t.requires_grad_() for t in ins]
    return ins, last


@pytest.mark.parametrize('backend', OP_BACKENDS)
@pytest.mark.parametrize('case', ['one', 'grouped_z_last', 'two'])
def test_opcheck(backend, case):
    """Schema, fake tensor, autograd registration and AOT dispatch."""
    ins, last = _op_args(case)
    torch.library.opcheck(selective_scan_op, (*ins, True, last, backend, ''))


@pytest.mark.parametrize('backend', OP_BACKENDS)
def test_opcheck_token_major_inputs(backend):
    """The fake implementation's output layout (that of empty_like(u) and
    of each input for its gradient) is what every backend returns, also
    for the token-major u, delta and z of a channels-last SS2D."""
    ins, last = _op_args('grouped_z_last')
    tm = lambda t: t.detach().transpose(-1, -2).contiguous().transpose(  # noqa
        -1, -2).requires_grad_()
    ins[0], ins[1], ins[6] = tm(ins[0]), tm(ins[1]), tm(ins[6])
    torch.library.opcheck(selective_scan_op, (*ins, True, last, backend, ''))
    y, _ = selective_scan_op(*ins, True, last, backend, '')
    assert y.stride() == torch.empty_like(ins[0]).stride()


@pytest.mark.parametrize('backend', OP_BACKENDS)
def test_op_and_public_function_agree(backend):
    ins = make_bi_inputs(2, 5, 30, 1)
    y = selective_scan_bidirectional(*ins, backend=backend)
    u, delta, A, B, C, D, bias = ins
    y_op, _ = torch.ops.mmmobilemamba.selective_scan(
        u, delta, A.view(2, 5, 1), B[:, :, None], C[:, :, None],
        D.view(2, 5), None, bias.view(2, 5), True, False, backend, '')
    torch.testing.assert_close(y, y_op, rtol=0, atol=0)


@needs_cpp
def test_cpp_identical_at_one_and_two_threads():
    """Per-task partial sums are added serially: no thread-count effect."""
    ins = make_inputs(3, 80, 300, 2, groups=2, z=True, seed=21)
    old = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xs = {k: v.clone().requires_grad_() for k, v in ins.items()}
            y, last = selective_scan(*(xs[k] for k in NAMES), True, True,
                                     backend='cpp')
            grads = torch.autograd.grad((y * y).sum() + last.sum(),
                                        list(xs.values()))
            bi = [t.clone().requires_grad_()
                  for t in make_bi_inputs(3, 100, 200, 1, seed=22)]
            yb = selective_scan_bidirectional(*bi, backend='cpp')
            bgrads = torch.autograd.grad((yb * yb).sum(), bi)
            results.append((y, last, *grads, yb, *bgrads))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*results):
        assert torch.equal(a, b)


_ISA_ORDER = ('baseline', 'avx2', 'avx512')
_ISA_CODE = 'from mmmobilemamba.ops.scan import cpu; print(cpu.isa())'


def _in_subprocess(env_isa: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MMMOBILEMAMBA_SCAN_ISA=env_isa)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


@needs_cpp
@pytest.mark.parametrize('isa', ['avx2', 'baseline'])
def test_lower_instruction_set_copies_match_the_reference(isa):
    """The kernel copies this CPU would not pick (a CI machine may pick
    them) give the reference's values and gradients too: the wide-row,
    token-major, two-direction, grouped/gated and half-precision cases."""
    if _ISA_ORDER.index(isa) > _ISA_ORDER.index(cpu.isa()):
        pytest.skip(f'this CPU has no {isa}')
    used = _in_subprocess(isa, '-c', _ISA_CODE)
    assert used.stdout.strip().splitlines()[-1] == isa, used.stderr[-2000:]
    run = _in_subprocess(
        isa, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
        'tests/ops/test_scan.py', '-k',
        'cpp and (wide_rows or token_major or bidirectional_matches or '
        'grouped_bc or half_precision)')
    assert run.returncode == 0, run.stdout[-3000:]
    assert ' passed' in run.stdout and 'skipped' not in run.stdout


@needs_cpp
def test_unknown_instruction_set_override_is_an_error():
    run = _in_subprocess('sse9', '-c', _ISA_CODE)
    assert run.returncode != 0
    assert 'MMMOBILEMAMBA_SCAN_ISA must be avx512, avx2 or baseline' in \
        run.stderr


@needs_cpp
def test_cpp_kernel_reports_its_instruction_set():
    assert cpu.isa() in ('avx512', 'avx2', 'baseline')


def test_table_rows_and_defaults():
    table = backend_table()
    assert list(table) == ['cpp', 'triton', 'torch', 'ref', 'portable']
    for name in ('cpp', 'triton', 'torch'):  # run as the operator
        assert table[name].backward is not None
    for name in ('ref', 'portable'):  # plain tensor code, never a default
        assert table[name].backward is None and not table[name].default_on
    assert table['triton'].fallback == 'torch'
    assert default_backend('cpu') == ('cpp' if HAS_CPP else 'torch')
    assert default_backend('meta') == 'torch'  # any device
    assert all(row.why for row in table.values())
    for key in backends.TRITON_CONFIGS:
        assert key[0] in ('forward', 'backward') and key[1] in ('fp32',
                                                                'half')


def test_unsupported_option_raises_instead_of_falling_back(monkeypatch):
    """A row that leaves an option out says so; asking for it raises (no
    silent switch to another row)."""
    calls = []

    def forward(*args):
        calls.append(1)
        return args[0], None

    row = backends.Backend('limited', (), lambda device: True, forward,
                           unsupported={'z': 'no gate in this kernel',
                                        'n_state>1': 'N = 1 only'})
    monkeypatch.setitem(backends.TABLE, 'limited', row)
    ins = make_inputs(1, 4, 8, 1, z=True)
    with pytest.raises(NotImplementedError, match='does not support z'):
        selective_scan(*(ins[k] for k in NAMES), True, backend='limited')
    bi = make_bi_inputs(1, 4, 8, 2)
    with pytest.raises(NotImplementedError, match='N = 1 only'):
        selective_scan_bidirectional(*bi, backend='limited')
    assert calls == []
    selective_scan_bidirectional(*make_bi_inputs(1, 4, 8, 1),
                                 backend='limited')
    assert calls == [1]


def _explain(model, x):
    torch._dynamo.reset()
    try:
        return torch._dynamo.explain(model)(x)
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize('backend', OP_BACKENDS)
def test_compile_sees_one_scan_op(backend):
    """torch.compile traces the scan as one op, no graph break, whichever
    row runs it."""
    u, delta, A, B, C, D, bias = make_bi_inputs(1, 6, 20, 1)

    def fn(u):
        y = selective_scan_bidirectional(u.relu(), delta, A, B, C, D, bias,
                                         backend=backend, check=False)
        return y * 2

    with torch.no_grad():
        explained = _explain(fn, u)
    assert explained.graph_break_count == 0, explained.break_reasons
    targets = [str(n.target) for g in explained.graphs for n in g.graph.nodes
               if n.op == 'call_function']
    assert sum('selective_scan' in t for t in targets) == 1, targets


@pytest.mark.parametrize('backend', OP_BACKENDS)
def test_export_sees_one_scan_op(backend):
    class Scan(torch.nn.Module):
        def forward(self, u, delta, A, B, C):
            return selective_scan_bidirectional(u, delta, A, B, C,
                                                backend=backend, check=False)

    ep = torch.export.export(Scan(), tuple(make_bi_inputs(1, 4, 6, 1)[:5]))
    scans = [str(n.target) for n in ep.graph.nodes
             if n.op == 'call_function' and 'selective_scan' in str(n.target)]
    assert scans == ['mmmobilemamba.selective_scan.default'], scans


def test_set_scan_backend_is_the_one_model_level_switch():
    from mmmobilemamba.models import MobileMamba, set_scan_backend
    from mmmobilemamba.models.ss2d import SS2D
    model = MobileMamba('T2', scan_backend='ref')
    ss2d = [m for m in model.modules() if isinstance(m, SS2D)]
    assert ss2d and all(m.scan_backend == 'ref' for m in ss2d)
    assert set_scan_backend(model, 'portable') == len(ss2d)
    assert all(m.scan_backend == 'portable' for m in ss2d)
    assert set_scan_backend(model, None) == len(ss2d)
    with pytest.raises(ValueError, match='unknown selective-scan backend'):
        set_scan_backend(model, 'cuda-kernels')


def test_t2_backbone_traces_without_graph_breaks():
    """torch.compile sees T2's whole forward as one graph, the scan as one
    op per SS2D."""
    from mmmobilemamba.models import MobileMamba
    from mmmobilemamba.models.ss2d import SS2D
    model = MobileMamba('T2', out_indices=(1, 2, 3)).eval()
    with torch.no_grad():
        explained = _explain(model, torch.rand(1, 3, 192, 192))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    targets = [str(n.target) for g in explained.graphs for n in g.graph.nodes
               if n.op == 'call_function']
    n_ss2d = sum(isinstance(m, SS2D) for m in model.modules())
    assert sum('selective_scan' in t for t in targets) == n_ss2d, targets


def test_t2_classifier_traces_without_graph_breaks():
    pytest.importorskip('mmpretrain')
    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(os.path.join(
        REPO, 'configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py'))
    cfg.model.pop('train_cfg', None)
    cfg.model.backbone['init_cfg'] = None
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).eval()

    def logits(x):
        return model(x, mode='tensor')

    with torch.no_grad():
        explained = _explain(logits, torch.rand(1, 3, 192, 192))
    assert explained.graph_break_count == 0, explained.break_reasons


def _run_without_extension(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where the compiled scan cannot be
    imported (as on a machine where it was not built)."""
    prelude = ('import sys\n'
               'sys.modules["mmmobilemamba.ops._scan_cpu"] = None\n')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    return subprocess.run([sys.executable, '-c', prelude + code],
                          capture_output=True, text=True, env=env,
                          timeout=600)


def test_fallback_without_the_extension_says_so_once():
    out = _run_without_extension(
        'import mmmobilemamba.ops\n'
        'import mmmobilemamba.ops.scan\n'
        'import torch\n'
        'from mmmobilemamba.ops.scan import (default_backend,\n'
        '    selective_scan_bidirectional)\n'
        'print("default", default_backend("cpu"))\n'
        'x = [torch.randn(1, 4, 6), torch.randn(1, 2, 4, 6),\n'
        '     -torch.rand(8, 1), torch.randn(1, 2, 1, 6),\n'
        '     torch.randn(1, 2, 1, 6)]\n'
        'print("ran", tuple(selective_scan_bidirectional(*x).shape))\n'
        'try:\n'
        '    selective_scan_bidirectional(*x, backend="cpp")\n'
        'except RuntimeError as e:\n'
        '    print("explicit:", e)\n')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'default torch' in out.stdout
    assert 'ran (1, 4, 6)' in out.stdout
    assert "explicit: selective-scan backend 'cpp' cannot run on cpu: " \
        'the compiled CPU selective scan' in out.stdout
    notes = [line for line in out.stderr.splitlines()
             if 'compiled CPU selective scan' in line]
    assert len(notes) == 1, out.stderr[-3000:]
    assert 'pure-PyTorch selective scan is used instead' in notes[0]
    assert 'pip install --no-build-isolation' in notes[0]


@pytest.mark.parametrize('backend', OP_BACKENDS)
def test_eager_inference_calls_the_kernel_directly(backend, monkeypatch):
    """Without autograd or a tracer the op's wrappers are skipped, with
    identical results; with gradients wanted, or under a dispatch mode (the
    FLOP counter), the op runs."""
    calls = []
    real = interface.selective_scan_op

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(interface, 'selective_scan_op', counting)
    ins = make_bi_inputs(1, 6, 17, 1)
    with torch.inference_mode():
        direct = selective_scan_bidirectional(*ins, backend=backend)
    assert not calls
    wanted = [t.clone().requires_grad_() for t in ins]
    through_op = selective_scan_bidirectional(*wanted, backend=backend)
    assert calls == [1]
    assert torch.equal(direct, through_op.detach())
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False):
        selective_scan_bidirectional(*ins, backend=backend)
    assert calls == [1, 1]


def test_check_false_skips_the_argument_checks():
    """SS2D builds its own arguments (A = -exp(A_logs)) and skips the
    checks; the public default keeps them."""
    u, delta, A, B, C, D, bias = make_bi_inputs(1, 4, 6, 1)
    positive = A.abs() + 0.1
    with pytest.raises(ValueError, match='A must be <= 0'):
        selective_scan_bidirectional(u, delta, positive, B, C, D, bias)
    y = selective_scan_bidirectional(u, delta, A, B, C, D, bias, check=False)
    torch.testing.assert_close(
        y, selective_scan_bidirectional(u, delta, A, B, C, D, bias))


# --- Triton failing on a user's GPU ---------------------------------------


class CompileError(RuntimeError):
    """Looks like what triton raises when ptxas fails."""


def _broken(kernel):
    def fail(*args):
        raise CompileError(f'PTXASError: ptxas failed on {kernel} '
                           '(simulated)')
    return fail


@pytest.fixture
def triton_default(monkeypatch):
    """Make a stand-in 'triton' row the default on the CPU, built from the
    'torch' row's kernels with the given ones broken."""
    def install(forward_ok=True, backward_ok=True):
        torch_row = backends.TABLE['torch']
        row = dataclasses.replace(
            backends.TABLE['triton'], default_on=('cpu', ),
            status=lambda device: True,
            forward=(torch_row.forward if forward_ok else
                     _broken('scan_fwd_kernel')),
            backward=(torch_row.backward if backward_ok else
                      _broken('scan_bwd_kernel')))
        monkeypatch.setattr(backends, 'TABLE', {'triton': row,
                                                'torch': torch_row})
        monkeypatch.setattr(backends, '_RESOLVED', {})
        monkeypatch.setattr(backends, '_STATUS', {})
        monkeypatch.setattr(interface, '_FAILED', {})
        assert default_backend('cpu') == 'triton'
    return install


def _bi_leaves(requires_grad):
    return [t.requires_grad_(requires_grad)
            for t in make_bi_inputs(2, 8, 20, 1)]


@pytest.mark.parametrize('grad', [False, True])
def test_default_falls_back_and_warns_once(triton_default, grad):
    triton_default(forward_ok=False)
    ins = _bi_leaves(grad)
    want = selective_scan_bidirectional(*ins, backend='torch')
    with pytest.warns(TritonFallbackWarning) as rec:
        got = selective_scan_bidirectional(*ins)
    torch.testing.assert_close(got, want)
    msg = str(rec[0].message)
    assert 'PTXASError: ptxas failed on scan_fwd_kernel' in msg
    assert 'report' in msg and "backend='triton'" in msg
    with warnings.catch_warnings():  # later default calls: silently
        warnings.simplefilter('error')
        torch.testing.assert_close(selective_scan_bidirectional(*ins), want)
    if grad:
        got = torch.autograd.grad(got.sum(), ins)
        for a, b in zip(got, torch.autograd.grad(want.sum(), ins)):
            torch.testing.assert_close(a, b)


def test_one_direction_falls_back_with_its_last_state(triton_default):
    triton_default(forward_ok=False)
    ins = make_inputs(1, 4, 9, 2, groups=2, z=True)
    args = [ins[k] for k in NAMES]
    want = selective_scan(*args, True, True, backend='torch')
    with pytest.warns(TritonFallbackWarning):
        got = selective_scan(*args, True, True)
    assert isinstance(got, tuple) and len(got) == 2
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_explicit_triton_raises(triton_default):
    triton_default(forward_ok=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(CompileError, match='simulated'):
            selective_scan_bidirectional(*_bi_leaves(False),
                                         backend='triton')
    assert not interface._FAILED


def test_backward_failure_falls_back_for_the_gradients(triton_default):
    triton_default(backward_ok=False)
    ins = _bi_leaves(True)
    y = selective_scan_bidirectional(*ins)
    gy = torch.randn_like(y)
    with pytest.warns(TritonFallbackWarning, match='scan_bwd_kernel'):
        got = torch.autograd.grad(y, ins, gy)
    want = torch.autograd.grad(
        selective_scan_bidirectional(*ins, backend='torch'), ins, gy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    y = selective_scan_bidirectional(*ins, backend='triton')
    with pytest.raises(CompileError):  # asked for by name: raises
        y.sum().backward()


def test_out_of_memory_is_not_hidden(triton_default, monkeypatch):
    triton_default()

    def oom(*args):
        raise torch.OutOfMemoryError('out of memory (simulated)')

    row = dataclasses.replace(backends.TABLE['triton'], forward=oom)
    monkeypatch.setitem(backends.TABLE, 'triton', row)
    with pytest.raises(torch.OutOfMemoryError):
        selective_scan_bidirectional(*_bi_leaves(False))
    assert not interface._FAILED
