"""The 'onnx-native' target in ONNX Runtime: SS2D's scan (with its norm
and gate) as one ``mmmobilemamba::SelectiveScanNormGate`` node (the plain
scan: ``SelectiveScan``) that the custom-op library
(ops/csrc/ort_scan.cpp, built by ``python -m mmmobilemamba.deploy.native
build``) runs inside plain onnxruntime."""
import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')

from mmmobilemamba.deploy.native import NativeLibraryError  # noqa: E402
from mmmobilemamba.deploy.native import onnxruntime as native_ort  # noqa
from mmmobilemamba.deploy.native.build import BuildError  # noqa: E402

NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'bias')
GATE = ('z', 'norm_weight', 'norm_bias')


@pytest.fixture(scope='module')
def library():
    """The built library (built here when it is not yet)."""
    try:
        return native_ort.library_path()
    except NativeLibraryError:
        pass
    try:
        native_ort.build()
    except BuildError as e:
        pytest.skip(f'the onnxruntime scan library cannot be built here: {e}')
    return native_ort.library_path()


def _scan_model(shapes=None, eps=None):
    """A one-node ONNX model: SelectiveScan(u, delta, A, B, C, D, bias), or
    with ``eps`` SelectiveScanNormGate(..., z, norm_weight, norm_bias);
    ``shapes`` None declares inputs of unknown shape."""
    from onnx import TensorProto, helper
    names = NAMES if eps is None else NAMES + GATE
    inputs = [helper.make_tensor_value_info(
        n, TensorProto.FLOAT, None if shapes is None else shapes[n])
        for n in names]
    out = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    if eps is None:
        node = helper.make_node('SelectiveScan', list(names), ['y'],
                                domain='mmmobilemamba')
    else:
        node = helper.make_node('SelectiveScanNormGate', list(names), ['y'],
                                domain='mmmobilemamba', eps=eps)
    graph = helper.make_graph([node], 'scan', inputs, [out])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid('', 17), helper.make_opsetid('mmmobilemamba', 1)])
    return model.SerializeToString()


def _session(model, threads=1):
    opts = native_ort.session_options(threads=threads)
    return ort.InferenceSession(model, sess_options=opts,
                                providers=['CPUExecutionProvider'])


def _inputs(b, d, length, n, k=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        'u': torch.randn(b, d, length, generator=gen),
        'delta': torch.randn(b, k, d, length, generator=gen) * .5,
        'A': -torch.rand(k, d, n, generator=gen) * 2 - .1,
        'B': torch.randn(b, k, n, length, generator=gen),
        'C': torch.randn(b, k, n, length, generator=gen),
        'D': torch.randn(k, d, generator=gen),
        'bias': torch.randn(k, d, generator=gen) * .3,
    }


# (1, 67, 490, 4): a longer scan of three channel tasks, split over
# onnxruntime's pool at 2 threads
@pytest.mark.parametrize('b,d,length,n', [(1, 37, 53, 1), (2, 37, 53, 3),
                                          (2, 64, 17, 3), (1, 5, 1, 1),
                                          (1, 67, 490, 4)])
@pytest.mark.parametrize('threads', [1, 2])
def test_kernel_matches_reference(library, b, d, length, n, threads):
    from mmmobilemamba.ops.scan import reference
    x = _inputs(b, d, length, n)
    shapes = {k: list(v.shape) for k, v in x.items()}
    session = _session(_scan_model(shapes), threads)
    (y, ) = session.run(None, {k: v.numpy() for k, v in x.items()})
    t = {k: v.double() for k, v in x.items()}
    ref = reference.scan(t['u'], t['delta'], t['A'], t['B'].unsqueeze(2),
                         t['C'].unsqueeze(2), t['D'], None, t['bias'], True,
                         False)[0].numpy()
    assert y.shape == ref.shape and y.dtype == np.float32
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err < 1e-5, err


def _gate_inputs(b, d, length, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {'z': torch.randn(b, d, length, generator=gen) * 4,
            'norm_weight': torch.rand(d, generator=gen) + .5,
            'norm_bias': torch.randn(d, generator=gen)}


@pytest.mark.parametrize('b,d,length,threads', [(2, 37, 53, 1),
                                                (1, 67, 490, 2)])
def test_gated_kernel_matches_reference(library, b, d, length, threads):
    """SelectiveScanNormGate: the scan, LayerNorm over d, * silu(z), against
    the double reference scan and torch's LayerNorm."""
    from mmmobilemamba.deploy.native.ops import norm_gate
    from mmmobilemamba.ops.scan import reference
    x = dict(_inputs(b, d, length, 3), **_gate_inputs(b, d, length))
    eps = 1e-3
    shapes = {k: list(v.shape) for k, v in x.items()}
    session = _session(_scan_model(shapes, eps=eps), threads)
    (y, ) = session.run(None, {k: v.numpy() for k, v in x.items()})
    t = {k: v.double() for k, v in x.items()}
    scan = reference.scan(t['u'], t['delta'], t['A'], t['B'].unsqueeze(2),
                          t['C'].unsqueeze(2), t['D'], None, t['bias'], True,
                          False)[0]
    ref = norm_gate(scan, t['z'], t['norm_weight'], t['norm_bias'], eps)
    err = np.abs(y - ref.numpy()).max() / ref.abs().max().item()
    assert err < 1e-5, err


@pytest.mark.parametrize('name,shape,message', [
    ('B', (1, 2, 3, 52), 'input B must be (b, K, N, L) = (1, 2, 3, 53)'),
    ('D', (2, 36), 'input D must be (K, d) = (2, 37)'),
    ('u', (1, 37), 'input u must be (b, d, L)'),
    ('A', (2, 37, 3, 1), 'input A must be (K, d, N)'),
    ('z', (1, 37, 52), 'SelectiveScanNormGate: input z must be (b, d, L) = '
     '(1, 37, 53)'),
    ('norm_bias', (36, ), 'input norm_bias must be (d,) = (37,)'),
])
def test_bad_shapes_name_the_input(library, name, shape, message):
    gated = name in GATE
    x = dict(_inputs(1, 37, 53, 3), **_gate_inputs(1, 37, 53)
             ) if gated else _inputs(1, 37, 53, 3)
    x = {k: v.numpy() for k, v in x.items()}
    x[name] = np.zeros(shape, np.float32)
    # shapes unknown to ORT
    session = _session(_scan_model(eps=1e-5 if gated else None))
    with pytest.raises(Exception, match=message.replace('(', r'\(')
                       .replace(')', r'\)')):
        session.run(None, x)


def test_gated_bad_eps_is_refused(library):
    with pytest.raises(Exception, match='attribute eps must be a positive'):
        _session(_scan_model(eps=-1.0))


def _backbone(arch, seed=0):
    from mmmobilemamba.models import MobileMamba
    model = MobileMamba(arch, out_indices=(1, 2, 3))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # trained-like: zero-init branches come alive
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + .5)
                m.bias.normal_(0, .1, generator=gen)
                m.running_mean.normal_(0, .1, generator=gen)
                m.running_var.copy_(
                    torch.rand(m.running_var.shape, generator=gen) + .5)
    return model.eval()


def _num_ss2d(model):
    from mmmobilemamba.models.ss2d import SS2D
    return sum(isinstance(m, SS2D) for m in model.modules())


def _check_native_graph(path, num_scans):
    graph = onnx.load(path).graph
    custom = [n for n in graph.node if n.domain not in ('', 'ai.onnx')]
    assert {(n.domain, n.op_type) for n in custom} == {
        ('mmmobilemamba', 'SelectiveScanNormGate')}
    assert len(custom) == num_scans > 0
    assert native_ort.uses_native(path)


@pytest.mark.parametrize('arch,size', [
    ('T2', (97, 75)),
    pytest.param('B1', (64, 64), marks=pytest.mark.slow)])
def test_export_native_matches_portable(library, tmp_path, arch, size):
    from mmmobilemamba.deploy.export import export
    from mmmobilemamba.deploy.runtimes import make_runner
    model = _backbone(arch)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    native = str(tmp_path / 'native.onnx')
    portable = str(tmp_path / 'portable.onnx')
    export(model, 'onnx-native', x, native)
    export(model, 'onnx', x, portable)
    _check_native_graph(native, _num_ss2d(model))
    assert not native_ort.uses_native(portable)
    with torch.no_grad():
        ref = [f.numpy() for f in model(x)]
    for threads in (1, 2):
        got = make_runner('onnxruntime', native, threads)(x)
        want = make_runner('onnxruntime', portable, threads)(x)
        assert len(got) == len(want) == 3
        for g, w, r in zip(got, want, ref):
            assert g.shape == w.shape == r.shape
            assert np.abs(g - w).max() <= 1e-5 * np.abs(w).max()
            assert np.abs(g - r).max() <= 1e-4 * max(1., np.abs(r).max())


def test_register_symbolic_is_idempotent():
    native_ort.register_symbolic(17)
    native_ort.register_symbolic(17)


def test_missing_library_names_the_build_command(library, tmp_path,
                                                 monkeypatch):
    monkeypatch.setattr(native_ort, 'LIBRARY', tmp_path / 'none.so')
    with pytest.raises(NativeLibraryError,
                       match='python -m mmmobilemamba.deploy.native build '
                       '--runtime onnxruntime'):
        native_ort.library_path()
    # a session for a native file says the same
    from mmmobilemamba.deploy.runtimes import ort_session
    path = str(tmp_path / 'scan.onnx')
    with open(path, 'wb') as f:
        f.write(_scan_model())
    with pytest.raises(NativeLibraryError, match='deploy.native build'):
        ort_session(path)


@pytest.mark.parametrize('change,message', [
    ({'ort_api_version': 99}, r'needs onnxruntime >= 1\.99, but onnxruntime'),
    ({'machine': 'sparc64'}, 'was built for sparc64'),
    ({'ort_api_version': 'x'}, 'unreadable'),
])
def test_record_mismatch_is_clear(library, tmp_path, monkeypatch, change,
                                  message):
    record = json.loads(native_ort.RECORD.read_text())
    record.update(change)
    fake = tmp_path / 'onnxruntime.json'
    fake.write_text(json.dumps(record))
    monkeypatch.setattr(native_ort, 'RECORD', fake)
    with pytest.raises(NativeLibraryError, match=message) as info:
        native_ort.library_path()
    assert native_ort.BUILD_COMMAND in str(info.value)


def test_native_int8(library, tmp_path):
    """int8 QDQ of an 'onnx-native' file: the convs quantized, the scan
    nodes float, and close to the fp32 model (the bound of the int8 tool
    tests)."""
    from mmmobilemamba.deploy.export import export
    from mmmobilemamba.deploy.runtimes import make_runner

    from ..helpers import quantized_weight_consumers
    model = _backbone('T2')
    gen = torch.Generator().manual_seed(2)
    calib = torch.randn(4, 3, 64, 64, generator=gen)
    out = str(tmp_path / 'int8.onnx')
    res = export(model, 'onnx-native', calib[:1], out, calibration=calib)
    _check_native_graph(out, _num_ss2d(model))
    fed = quantized_weight_consumers(out)
    assert 'Conv' in fed and fed <= {'Conv', 'MatMul', 'Gemm'}, fed
    int8 = make_runner('onnxruntime', out, 1)
    fp32 = make_runner('onnxruntime', res.fp32_path, 1)
    for img in calib:
        for g, r in zip(int8(img[None]), fp32(img[None])):
            assert np.isfinite(g).all()
            assert np.abs(g - r).max() <= 0.25 * max(1., np.abs(r).max())


def test_export_tool_and_infer_with_the_native_library(library, tmp_path):
    """export.py --native-scan writes a file that says it needs the
    library; infer.py refuses it without --native-library and runs it
    with the path native_library() gives."""
    from PIL import Image

    from ..helpers import run_tool
    from .test_export_onnx import CONFIG, _classifier
    ckpt = str(tmp_path / 't2.pth')
    torch.save({'state_dict': _classifier().state_dict()}, ckpt)
    out_path = str(tmp_path / 't2_native.onnx')
    out = run_tool('tools/deployment/export.py', CONFIG, ckpt, out_path,
                   '--target', 'onnx', '--native-scan', '--shape', '96', '64')
    assert 'classification, input (1, 3, 96, 64)' in out, out
    assert native_ort.uses_native(out_path)
    meta = json.load(open(out_path + '.json'))
    assert meta['native_scan'] == 'onnxruntime'
    image = str(tmp_path / 'img.png')
    Image.fromarray(np.random.RandomState(0).randint(
        0, 255, (80, 120, 3), dtype=np.uint8)).save(image)
    code, out = run_tool('tools/deployment/infer.py', out_path, image,
                         check=False)
    assert code == 1 and '--native-library' in out, out
    out = run_tool('tools/deployment/infer.py', out_path, image,
                   '--native-library', library)
    assert 'top' in out.lower() or 'class' in out.lower(), out
