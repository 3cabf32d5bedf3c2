"""check_gpu.py on a machine without CUDA: a clear message, exit status 2.

(The checks themselves need a GPU; docs/benchmarks/gpu.md says how to run
them.)
"""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
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


SMOKE = r'''
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], 'tools', 'analysis_tools'))
import check_gpu
check_gpu.TRAIN = (('T2', 32), )
check_gpu.INFER = (('T2', 32, 2), )
sys.exit(check_gpu.main(['--device', 'cpu', '--quick', '--train-batch', '2',
                         '--only', 'scan', 'train', 'infer']))
'''


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('triton') is None,
                    reason='triton is not installed: no interpreter to run '
                    'the Triton rows on the CPU')
def test_smoke_on_cpu_with_the_triton_interpreter():
    """The scan, training and inference rows run end to end on the CPU
    (triton's interpreter, tiny models), so a GPU run does not stop on a
    bug in the script itself."""
    env = dict(os.environ, TRITON_INTERPRET='1')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    out = subprocess.run([sys.executable, '-c', SMOKE, REPO],
                         capture_output=True, text=True, env=env,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rows = [line for line in out.stdout.splitlines()
            if line.startswith('| ') and not line.startswith('| check')]
    assert len(rows) == 12, out.stdout  # 5 families x 2 dtypes, train, infer
    assert all('| ok |' in r for r in rows), out.stdout
