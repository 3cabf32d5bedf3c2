"""The Triton kernels compile for real GPUs (sm_80, sm_90) without one.

``compile_triton.py --quick`` lowers a representative subset (B1's first
stage: bf16 with softplus and delta_bias at N=1, fp32 without them at
N=16; forward and backward kernels, both directions) to cubin for each
target. About 20 s of compiling on 2 cores; the full tool is described in
docs/benchmarks/gpu.md.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'compile_triton.py')


def _env():
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    return env


@pytest.mark.skipif(importlib.util.find_spec('triton') is None,
                    reason='triton is not installed: nothing to compile')
def test_kernels_compile_for_sm80_and_sm90(tmp_path):
    out = subprocess.run(
        [sys.executable, TOOL, '--quick', '--arch', '80', '90', '--jobs',
         '2', '--out', str(tmp_path)], capture_output=True, text=True,
        env=_env(), timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rows = json.loads((tmp_path / 'rows.json').read_text())
    # 2 problems x (forward, backward) x 2 directions x 2 targets
    assert len(rows) == 16
    assert {r['arch'] for r in rows} == {80, 90}
    assert {r['kernel'] for r in rows} == {'scan_fwd_kernel',
                                           'scan_bwd_kernel'}
    for r in rows:
        assert 'error' not in r, r
        assert 0 < r['regs'] <= 255 and r['smem'] <= r['smem_limit'], r
        assert 'SMEM' not in r['flags'], r
    cubins = list(tmp_path.glob('*.cubin'))
    assert len(cubins) == 16
    assert all(c.read_bytes()[:4] == b'\x7fELF' for c in cubins)
    assert '16 rows: 0 failed' in out.stdout


@pytest.mark.skipif(importlib.util.find_spec('triton') is None,
                    reason='triton is not installed')
def test_refuses_the_interpreter():
    env = dict(_env(), TRITON_INTERPRET='1')
    out = subprocess.run([sys.executable, TOOL, '--quick'],
                         capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 2 and 'TRITON_INTERPRET' in out.stderr


def test_problems_come_from_the_arch_settings():
    """Every variant's SS2D stages are found by running the backbone."""
    pytest.importorskip('mmengine')
    sys.path.insert(0, osp.dirname(TOOL))
    try:
        import compile_triton as ct
    finally:
        sys.path.remove(osp.dirname(TOOL))
    assert ct.variant_resolution('B2') == 384
    # B1 at 256: strides 16, 32, 64 -> 16x16, 8x8, 4x4
    shapes = ct.ss2d_shapes('B1', 256)
    assert [s[1] for s in shapes] == [256, 64, 16]
    assert all(s[2] == 1 for s in shapes)
    probs = ct.problems(['B1'])
    # 3 stages x 3 dtypes x softplus x bias x N in {1, 16}
    assert len(probs) == 3 * 3 * 2 * 2 * 2
