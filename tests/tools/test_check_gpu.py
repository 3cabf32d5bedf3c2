"""check_gpu.py on a machine without CUDA: a clear message, exit status 2.

(The checks themselves need a GPU; docs/benchmarks/gpu.md says how to run
them.)
"""
import os
import os.path as osp
import subprocess
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'check_gpu.py')


def test_without_cuda_exits_with_a_clear_message():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    out = subprocess.run([sys.executable, TOOL], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert 'no CUDA device is available' in out.stderr
    assert 'needs a machine with an NVIDIA GPU' in out.stderr
    assert 'compile_triton.py' in out.stderr
    assert out.stdout == ''


def test_classifier_and_backend_switch_build_on_cpu():
    """The models the training and inference rows time build without
    mmpretrain and take the requested scan backend."""
    sys.path.insert(0, osp.dirname(TOOL))
    try:
        import check_gpu
    finally:
        sys.path.remove(osp.dirname(TOOL))
    from mmmobilemamba.models.ss2d import SS2D
    model = check_gpu.set_scan_backend(check_gpu.Classifier('T2', 10),
                                       'ref')
    assert {m.scan_backend for m in model.modules()
            if isinstance(m, SS2D)} == {'ref'}
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    # every scan family of the table has cases, fp32 and bf16 tolerances
    assert all(check_gpu.SCAN_CASES.values())
    assert max(c[2] for c in check_gpu.SCAN_CASES['lengths']) == 4096
