"""The Triton launches take their specialisations from ``launch_config``.

A stand-in for the kernels module records every launch (no triton needed),
and each recorded launch is compared with what ``launch_config`` says for
the same problem: kernel, grid, integer arguments, constexprs, warps and
the dtype of every pointer argument. The compile tool compiles
``launch_config``'s output, so this is what keeps the two together.
"""
import pytest
import torch

from mmmobilemamba.ops.scan import TRITON_CONFIGS, triton_scan
from mmmobilemamba.ops.scan.triton_scan import ScanProblem, launch_config


class _Recorder:
    """Stands in for one @triton.jit kernel: ``kernel[grid](*a, **kw)``."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append((self.name, tuple(grid), args, kwargs))
        return launch


class _FakeKernels:
    def __init__(self):
        self.log = []
        self.scan_fwd_kernel = _Recorder('scan_fwd_kernel', self.log)
        self.scan_bwd_kernel = _Recorder('scan_bwd_kernel', self.log)


@pytest.fixture
def fake_kernels(monkeypatch):
    fake = _FakeKernels()
    monkeypatch.setattr(triton_scan, '_KERNELS', fake)
    return fake


def _check(log, expected):
    assert len(log) == len(expected)
    for (name, grid, args, kwargs), cfg in zip(log, expected):
        assert name == cfg.kernel and grid == cfg.grid
        assert kwargs == dict(cfg.constexprs, num_warps=cfg.num_warps)
        n_ptr = len(cfg.pointers)
        assert [a.dtype for a in args[:n_ptr]] == list(cfg.pointers.values())
        assert list(args[n_ptr:]) == list(cfg.ints.values())


CASES = [
    # (directions, dtype, N, softplus, bias, z, last)
    (2, torch.float32, 1, True, True, False, False),
    (2, torch.bfloat16, 1, True, True, False, False),
    (2, torch.float16, 16, False, False, False, False),
    (1, torch.float32, 16, True, True, True, True),
    (1, torch.bfloat16, 1, False, False, True, False),
]


@pytest.mark.parametrize('k,dtype,n_state,softplus,bias,z,last', CASES)
def test_launches_follow_launch_config(fake_kernels, k, dtype, n_state,
                                       softplus, bias, z, last):
    b, d, L = 2, 48, 37
    f32 = torch.float32
    u = torch.randn(b, d, L, dtype=dtype)
    delta = torch.randn(b, k, d, L, dtype=dtype)
    A = -torch.rand(k, d, n_state)  # fp32, as SS2D passes it
    B = torch.randn(b, k, 1, n_state, L, dtype=dtype)
    D = torch.ones(k, d)
    dbias = torch.rand(k, d) if bias else None
    zz = torch.randn(b, d, L, dtype=dtype) if z else None
    triton_scan.forward(u, delta, A, B, B, D, zz, dbias, softplus, last)
    problem = ScanProblem(
        b, d, L, n_state, 1, k, softplus, True, last,
        dict(u=dtype, delta=dtype, A=f32, B=dtype, C=dtype,
             **({'z': dtype} if z else {}),
             **({'delta_bias': f32} if bias else {})))
    _check(fake_kernels.log, launch_config(problem))

    fake_kernels.log.clear()
    gy = torch.randn(b, d, L, dtype=dtype)
    g_last = torch.randn(b, d, n_state, dtype=dtype) if last else None
    triton_scan.backward(gy, g_last, u, delta, A, B, B, D, zz, dbias,
                         softplus)
    problem.dtypes['gy'] = dtype
    if last:
        problem.dtypes['g_last'] = dtype
    # the backward re-runs the forward for its tile checkpoints
    problem.return_last_state = False
    _check(fake_kernels.log, launch_config(problem) +
           launch_config(problem, backward=True))


def test_bidirectional_launch_order_and_flags():
    cfgs = launch_config(ScanProblem(
        1, 64, 100, 1, k_dirs=2,
        dtypes=dict(u=torch.float32, delta=torch.float32, A=torch.float32,
                    B=torch.float32, C=torch.float32,
                    delta_bias=torch.float32)))
    # The reverse direction writes y with the D skip, the forward one adds.
    assert [c.constexprs['REVERSE'] for c in cfgs] == [True, False]
    assert [c.constexprs['HAS_D'] for c in cfgs] == [True, False]
    assert [c.constexprs['ACCUM_Y'] for c in cfgs] == [False, True]
    assert [c.ints['k'] for c in cfgs] == [1, 0]
    assert cfgs[0].constexprs['BD'] * cfgs[0].grid[1] >= 64


@pytest.mark.parametrize('backward', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_blocks_follow_the_table(backward, dtype):
    """BD, BL and warps come from TRITON_CONFIGS (MobileMamba's N = 1 at a
    long enough sequence)."""
    cfg = TRITON_CONFIGS[('backward' if backward else 'forward',
                          'fp32' if dtype == torch.float32 else 'half')]
    launch = launch_config(ScanProblem(
        1, 320, 1024, 1, k_dirs=2,
        dtypes=dict(u=dtype, delta=dtype, A=torch.float32, B=dtype,
                    C=dtype)), backward)[0]
    bd, bl = launch.constexprs['BD'], launch.constexprs['BL']
    assert bd == cfg.block_d and launch.num_warps == cfg.num_warps
    assert bl == max(16, min(cfg.tile // bd, cfg.max_steps))


def test_grouped_bc_blocks_never_span_groups():
    cfg = launch_config(ScanProblem(
        1, 96, 10, 2, groups=3,
        dtypes=dict(u=torch.float32, delta=torch.float32, A=torch.float32,
                    B=torch.float32, C=torch.float32)))[0]
    assert cfg.ints['group_dim'] == 32
    assert cfg.ints['group_dim'] % cfg.constexprs['BD'] == 0
