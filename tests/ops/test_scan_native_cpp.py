"""The runtimes' scan entry point (``ops/csrc/scan_native.h``) built
natively from its standalone C++ test (``ops/csrc/test_scan_native.cpp``):
against a double-precision reference at odd sizes, threaded runs bit-equal
to serial ones, bad shapes rejected. The same program runs for aarch64
under qemu in ``tools/deployment/test_aarch64.sh``.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / 'mmmobilemamba' / 'ops' / 'csrc'
SOURCE = CSRC / 'test_scan_native.cpp'
CXX = os.environ.get('CXX') or 'g++'
SUMMARY = re.compile(r'^(\d+) passed, (\d+) failed$', re.M)

pytestmark = pytest.mark.skipif(
    shutil.which(CXX) is None,
    reason=f'no C++ compiler ({CXX!r}) to build test_scan_native.cpp')


@pytest.fixture(scope='module')
def binary(tmp_path_factory):
    """The test program, compiled once for the module."""
    out = tmp_path_factory.mktemp('scan_native') / 'test_scan_native'
    cmd = [
        CXX, '-O3', '-std=c++20', '-fopenmp-simd', '-fno-trapping-math',
        '-Wno-psabi', '-pthread',
        f'-I{CSRC}',
        str(SOURCE), '-o',
        str(out)
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f'{" ".join(cmd)}\n{res.stderr[-4000:]}'
    return out


def run(binary, isa=None):
    env = dict(os.environ)
    env.pop('MMMOBILEMAMBA_SCAN_ISA', None)
    if isa is not None:
        env['MMMOBILEMAMBA_SCAN_ISA'] = isa
    res = subprocess.run([str(binary)],
                         capture_output=True,
                         text=True,
                         env=env,
                         timeout=120)
    out = res.stdout + res.stderr
    summary = SUMMARY.findall(out)
    assert res.returncode == 0 and summary and summary[-1][1] == '0', out
    assert int(summary[-1][0]) > 400, out  # every group ran
    return out


def cpu_flags():
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return set()
    m = re.search(r'^flags\s*:(.*)$', text, re.M)
    return set(m.group(1).split()) if m else set()


def test_scan_native_reference(binary):
    out = run(binary)
    assert 'instruction set:' in out
    assert re.search(r'^threads .* 0 failed', out, re.M), out


@pytest.mark.parametrize('isa', ['baseline', 'avx2'])
def test_scan_native_lower_isa(binary, isa):
    if isa == 'avx2':
        import platform
        if platform.machine() not in ('x86_64', 'AMD64'):
            pytest.skip('AVX2 is an x86-64 instruction set')
        if not {'avx2', 'fma'} <= cpu_flags():
            pytest.skip('this CPU lacks AVX2/FMA')
    out = run(binary, isa)
    assert f'instruction set: {isa}' in out, out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('apt-get') is None and
                    shutil.which('aarch64-linux-gnu-g++') is None,
                    reason='needs Debian packages (apt-get) for the aarch64 '
                    'cross compiler and qemu')
def test_aarch64_script(tmp_path):
    """tools/deployment/test_aarch64.sh as documented: cross-compiles the
    kernels for aarch64, runs the reference test under qemu with the
    recurrence vectorised for NEON (about 35 s with the apt install)."""
    script = Path(__file__).resolve().parents[2] / 'tools' / 'deployment' / \
        'test_aarch64.sh'
    res = subprocess.run(['bash', str(script)], capture_output=True,
                         text=True, env=dict(os.environ, OUT=str(tmp_path)),
                         timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    # the x86-64 and the qemu run each end with an indented summary line
    summaries = re.findall(r'^\s+(\d+) passed, (\d+) failed$', out, re.M)
    assert len(summaries) >= 2 and all(f == '0' for _, f in summaries), out
    assert 'aarch64 check: passed' in out, out[-3000:]
    assert 'recurrence loop vectorised' in out, out[-3000:]
