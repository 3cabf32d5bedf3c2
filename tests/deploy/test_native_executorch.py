"""The ``'xnnpack-native'`` deploy target: SS2D's scan as the custom
operator ``mmmobilemamba::selective_scan_native.gated_out`` (with SS2D's
norm and gate; the plain scan: ``.out``), run in ExecuTorch's
runtime by the kernel library of :mod:`mmmobilemamba.deploy.native.executorch`
(built at install time; built here when missing, skipped without a
compiler or executorch headers).

* the kernels (``.out`` and ``.gated_out``), in ``.pte`` programs, against
  the fp64 reference scan (and torch's LayerNorm and SiLU) at odd sizes,
  one above the parallel cutoff;
* T2 and B1 backbones: one native operator per SS2D outside the XNNPACK
  delegates, nothing else outside, output equal to the portable
  ``'xnnpack'`` program's; int8 with SS2D's projections quantized;
* the errors: library not built, or built for another executorch version;
  an int8 program XNNPACK cannot run is refused.
"""
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip('executorch')

from mmmobilemamba.deploy.native import (NativeLibraryError,  # noqa: E402
                                         native_library)
from mmmobilemamba.deploy.native import executorch as et_native  # noqa: E402
from mmmobilemamba.deploy.native.build import BuildError  # noqa: E402
from mmmobilemamba.deploy.native.ops import \
    selective_scan_native  # noqa: E402
from mmmobilemamba.ops.scan import reference  # noqa: E402

H, W = 97, 75  # odd and non-square: the scan lengths are odd too


@pytest.fixture(scope='module')
def library():
    """The installed kernel library (built when missing, as install.sh
    does)."""
    try:
        return et_native.library_path()
    except NativeLibraryError:
        try:
            return str(et_native.build())
        except BuildError as e:
            pytest.skip(f'cannot build the ExecuTorch kernels: {e}')


class _Scan(torch.nn.Module):
    """The operator after one delegated operator (so the program has an
    XNNPACK subgraph beside the custom operator)."""

    def forward(self, u, delta, A, B, C, D, bias):
        return selective_scan_native(u * 1.0, delta, A, B, C, D, bias)


def _inputs(batch, dim, length, n, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, dim, length, generator=g),
            torch.randn(batch, k, dim, length, generator=g) * 0.5,
            -torch.rand(k, dim, n, generator=g) - 0.1,
            torch.randn(batch, k, n, length, generator=g),
            torch.randn(batch, k, n, length, generator=g),
            torch.randn(k, dim, generator=g),
            torch.randn(k, dim, generator=g) * 0.1)


# the second case is larger (several tasks of 32 channels, 2 samples): it
# runs split over ExecuTorch's threadpool
@pytest.mark.parametrize('batch,dim,length,n', [(1, 37, 53, 1),
                                                (2, 67, 245, 4)])
def test_kernel_matches_reference(library, tmp_path, batch, dim, length, n):
    from mmmobilemamba.deploy.xnnpack import PteRunner, save
    args = _inputs(batch, dim, length, n)
    manager, report = _export_scan(args)
    subgraphs, inside, outside = report
    assert outside == Counter({'selective_scan_native': 1})
    assert subgraphs == 1 and inside == Counter({'mul': 1})
    path = str(tmp_path / 'scan.pte')
    save(manager, path)
    assert et_native.uses_native_scan(path)
    runner = PteRunner(path)
    assert runner.native_library == library
    got = runner.method.execute(list(args))[0].numpy()
    u, delta, A, B, C, D, bias = (a.double() for a in args)
    ref = reference.scan(u, delta, A, B.unsqueeze(2), C.unsqueeze(2), D,
                         None, bias, True, False)[0].numpy()
    assert got.shape == ref.shape == (batch, dim, length)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


class _GatedScan(torch.nn.Module):
    """The gated overload (scan, LayerNorm over d, * silu(z))."""

    def forward(self, u, delta, A, B, C, D, bias, z, w, b):
        from mmmobilemamba.deploy.native.ops import \
            selective_scan_norm_gate_native
        return selective_scan_norm_gate_native(u * 1.0, delta, A, B, C, D,
                                               bias, z, w, b, 1e-3)


def test_gated_kernel_matches_reference(library, tmp_path):
    from executorch.exir import to_edge_transform_and_lower

    from mmmobilemamba.deploy.native.ops import norm_gate
    from mmmobilemamba.deploy.xnnpack import PteRunner, save
    batch, dim, length = 2, 37, 53
    g = torch.Generator().manual_seed(5)
    args = _inputs(batch, dim, length, 3) + (
        torch.randn(batch, dim, length, generator=g) * 4,
        torch.rand(dim, generator=g) + .5, torch.randn(dim, generator=g))
    program = torch.export.export(_GatedScan(), args, strict=False)
    path = str(tmp_path / 'gated.pte')
    save(to_edge_transform_and_lower(program).to_executorch(), path)
    got = PteRunner(path).method.execute(list(args))[0].numpy()
    u, delta, A, B, C, D, bias, z, w, b = (a.double() for a in args)
    y = reference.scan(u, delta, A, B.unsqueeze(2), C.unsqueeze(2), D, None,
                       bias, True, False)[0]
    ref = norm_gate(y, z, w, b, 1e-3).numpy()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def _export_scan(args):
    """fp32 program of :class:`_Scan` (several inputs, so not through
    export_program, which takes one image)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import \
        XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from mmmobilemamba.deploy.xnnpack import delegation
    program = torch.export.export(_Scan(), args, strict=False)
    edge = to_edge_transform_and_lower(program,
                                       partitioner=[XnnpackPartitioner()])
    report = delegation(edge)
    return edge.to_executorch(), report


@pytest.mark.parametrize('arch,size', [
    ('T2', (H, W)), pytest.param('B1', (65, 63), marks=pytest.mark.slow)])
def test_backbone_matches_portable(library, tmp_path, arch, size):
    from mmmobilemamba.deploy.export import export
    from mmmobilemamba.deploy.model_source import Features
    from mmmobilemamba.deploy.xnnpack import PteRunner
    from mmmobilemamba.models import MobileMamba
    from mmmobilemamba.models.ss2d import SS2D
    torch.manual_seed(0)
    backbone = MobileMamba(arch=arch, out_indices=(2, 3)).eval()
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model = Features(backbone).eval()
    x = torch.randn(1, 3, *size)
    num_ss2d = sum(isinstance(m, SS2D) for m in backbone.modules())
    assert num_ss2d > 0
    native = export(model, 'xnnpack-native', x, str(tmp_path / 'n.pte'))
    portable = export(model, 'xnnpack', x, str(tmp_path / 'p.pte'))
    subgraphs, inside, outside = native.delegation
    # one scan operator per SS2D, everything else delegated
    assert outside == Counter({'selective_scan_native': num_ss2d})
    assert 'selective_scan_native' not in inside
    assert subgraphs >= 1 and sum(inside.values()) > 0
    assert portable.delegation[2] == Counter()
    assert et_native.uses_native_scan(native.path)
    assert not et_native.uses_native_scan(portable.path)
    got = PteRunner(native.path)(x)
    want = PteRunner(portable.path)(x)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert np.abs(g - w).max() <= 1e-5 * np.abs(w).max()


def test_missing_library_names_build_command(tmp_path, monkeypatch):
    with pytest.raises(NativeLibraryError, match='not built') as info:
        et_native.library_path(tmp_path)
    assert et_native.BUILD_COMMAND in str(info.value)
    assert 'python -m mmmobilemamba.deploy.native build --runtime ' \
        'executorch' in str(info.value)
    # the public entry point and the runner say the same
    monkeypatch.setattr(et_native, 'LIBRARY_DIR', tmp_path)
    with pytest.raises(NativeLibraryError, match='--runtime executorch'):
        native_library('executorch')


def test_runner_without_library(tmp_path, monkeypatch):
    from mmmobilemamba.deploy.xnnpack import PteRunner
    pte = tmp_path / 'fake.pte'
    # only the operator table's name matters to the check before loading
    pte.write_bytes(b'\0' * 16 + b'mmmobilemamba::selective_scan_native')
    monkeypatch.setattr(et_native, 'LIBRARY_DIR', tmp_path / 'nowhere')
    with pytest.raises(NativeLibraryError, match='--runtime executorch'):
        PteRunner(str(pte))


def test_version_mismatch(library, tmp_path):
    info_file = et_native.LIBRARY_DIR / et_native.INFO_NAME
    info = json.loads(info_file.read_text())
    assert info['executorch_version'] == et_native.executorch_version()
    shutil.copy(library, tmp_path / et_native.LIBRARY_NAME)
    info['executorch_version'] = '0.0.1'
    (tmp_path / et_native.INFO_NAME).write_text(json.dumps(info))
    with pytest.raises(NativeLibraryError) as err:
        et_native.library_path(tmp_path)
    msg = str(err.value)
    assert 'built for executorch 0.0.1' in msg
    assert et_native.executorch_version() in msg
    assert et_native.BUILD_COMMAND in msg
    # an unreadable record is an error too, not a crash
    (tmp_path / et_native.INFO_NAME).write_text('{')
    with pytest.raises(NativeLibraryError, match='unreadable'):
        et_native.library_path(tmp_path)


@pytest.mark.slow
def test_int8_native_quantizes_projections(library, tmp_path):
    """pt2e int8 with SS2D's projections quantized (what the export tool
    does with --native-scan): the scan (with its norm and gate) stays the
    float operator between the int8 delegates, and the program runs at
    64x64, where SS2D in float cannot (test_int8_unrunnable_size_raises)."""
    from mmmobilemamba.deploy.export import export
    from mmmobilemamba.deploy.model_source import Features
    from mmmobilemamba.deploy.xnnpack import PteRunner
    from mmmobilemamba.models import MobileMamba
    from mmmobilemamba.models.ss2d import SS2D
    torch.manual_seed(0)
    model = Features(MobileMamba(arch='T2').eval()).eval()
    x = torch.randn(1, 3, 64, 64)
    calibration = torch.randn(2, 3, 64, 64)
    exported = export(model, 'xnnpack-native', x, str(tmp_path / 'q.pte'),
                      calibration=calibration)
    num_ss2d = sum(isinstance(m, SS2D) for m in model.modules())
    assert exported.delegation[2] == Counter(
        {'selective_scan_native': num_ss2d})
    got, = PteRunner(exported.path)(x)
    with torch.no_grad():
        want = model(x)[0].numpy()
    assert got.shape == want.shape and np.isfinite(got).all()
    corr = np.corrcoef(got.ravel(), want.ravel())[0, 1]
    assert corr > 0.9, corr


def test_int8_unrunnable_program_raises(tmp_path, monkeypatch):
    """An int8 program that fails on its own example is not handed back:
    export_program raises, naming what to export instead."""
    from mmmobilemamba.deploy import xnnpack

    class Manager:
        buffer = b'not a program'

    def fail(self, path):
        raise RuntimeError('method->execute() failed with error 0x1')

    monkeypatch.setattr(xnnpack.PteRunner, '__init__', fail)
    with pytest.raises(RuntimeError, match='xnnpack-native') as info:
        xnnpack.check_runs(Manager(), torch.zeros(1, 3, 64, 64), native=True,
                           ss2d_float=True)
    msg = str(info.value)
    assert '(1, 3, 64, 64)' in msg and 'error 0x1' in msg
    assert 'SS2D in float' in msg and 'quantize SS2D too' in msg
    with pytest.raises(RuntimeError, match="'xnnpack' program") as info:
        xnnpack.check_runs(Manager(), torch.zeros(1, 3, 8, 8))
    assert 'SS2D quantized' in str(info.value)
    assert '--native-scan' in str(info.value)


@pytest.mark.slow
def test_int8_unrunnable_size_raises(library, tmp_path):
    """At 64x64 the int8 native program of T2 with SS2D in float cannot run
    (XNNPACK, executorch 1.5.1): export raises instead of writing it."""
    from mmmobilemamba.deploy.export import export
    from mmmobilemamba.deploy.model_source import Features
    from mmmobilemamba.models import MobileMamba
    from mmmobilemamba.models.ss2d import SS2D
    torch.manual_seed(0)
    model = Features(MobileMamba(arch='T2').eval()).eval()
    x = torch.randn(1, 3, 64, 64)
    out = tmp_path / 'q.pte'
    with pytest.raises(RuntimeError, match='quantize SS2D too'):
        export(model, 'xnnpack-native', x, str(out),
               calibration=torch.randn(2, 3, 64, 64), float_types=(SS2D, ))
    assert not out.exists()
