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


def test_problems_are_the_ss2d_shapes_of_every_variant():
    """The static shape table the tool compiles for is what each variant's
    backbone runs (SS2D inputs recorded by forward hooks)."""
    import torch

    from mmmobilemamba.analysis.scan_benchmark import VARIANTS, ss2d_shapes
    from mmmobilemamba.models import MobileMamba
    from mmmobilemamba.models.ss2d import SS2D
    sys.path.insert(0, osp.dirname(TOOL))
    try:
        import compile_triton as ct
    finally:
        sys.path.remove(osp.dirname(TOOL))
    for variant, (size, _) in VARIANTS.items():
        model = MobileMamba(variant, init_cfg=None).eval()
        seen = []
        for m in model.modules():
            if isinstance(m, SS2D):
                m.register_forward_pre_hook(lambda m, x: seen.append(
                    (m.d_inner, x[0].shape[2] * x[0].shape[3])))
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
        assert sorted(set(seen)) == sorted(ss2d_shapes(variant)), variant
    # B1 at 256: strides 16, 32, 64 -> 16x16, 8x8, 4x4
    assert [s[1] for s in ss2d_shapes('B1')] == [256, 64, 16]
    # 3 stages x 3 dtypes x softplus x bias x N in {1, 16}
    assert len(ct.problems(['B1'])) == 3 * 3 * 2 * 2 * 2
