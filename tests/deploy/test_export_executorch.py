"""tools/deployment/export_executorch.py as a user runs it: a T2 classifier
and the backbone's features at a non-square size become ExecuTorch programs
delegated to XNNPACK, fp32 and int8, and ExecuTorch's runtime reproduces
PyTorch (fp32 within 1e-4; int8 close and agreeing on the top-1)."""
import os.path as osp
import re

import numpy as np
import pytest
import torch

from ..helpers import load_tool, run_tool
from .test_export_onnx import CONFIG, _classifier

TOOL = 'tools/deployment/export_executorch.py'
H, W = 64, 48  # non-square, and small enough for CI


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    model = _classifier()
    path = str(tmp_path_factory.mktemp('pte') / 't2.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path, model


@pytest.fixture(scope='module')
def calib_dir(tmp_path_factory):
    make_imagenet_folder = load_tool(
        'dataset_converters/make_imagenet_folder.py').make_imagenet_folder
    root = str(tmp_path_factory.mktemp('calib'))
    make_imagenet_folder(root, num_train_per_class=0, num_val_per_class=1,
                         image_size=48)
    return osp.join(root, 'val')


def _delegated_share(out: str) -> float:
    match = re.search(r'XNNPACK delegate: (\d+) of (\d+) operators', out)
    assert match, out[-3000:]
    return int(match.group(1)) / int(match.group(2))


def _pte_outputs(path, x):
    from mmmobilemamba.deploy.runtimes import make_runner
    return make_runner('executorch', path)(x)


@pytest.mark.slow
def test_fp32_classifier_non_square(checkpoint, tmp_path):
    ckpt, model = checkpoint
    pte = str(tmp_path / 't2.pte')
    out = run_tool(TOOL, CONFIG, ckpt, pte, '--shape', str(H),
                   str(W))
    assert f'classification, input (1, 3, {H}, {W})' in out
    match = re.search(r'worst difference ([\d.e+-]+)', out)
    assert match and float(match.group(1)) <= 1e-4, out[-3000:]
    # the delegate forms leave no operator outside XNNPACK, in one piece
    assert _delegated_share(out) == 1.0, out[-3000:]
    assert 'left outside: none' in out
    assert 'in 1 delegated subgraphs' in out
    # independently of the tool: the unfused PyTorch model
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x, mode='tensor').numpy()
    got, = _pte_outputs(pte, x)
    assert got.shape == (1, 1000)
    assert np.abs(got - ref).max() <= 1e-4 * max(1., np.abs(ref).max())


@pytest.mark.slow
def test_fp32_features_non_square(checkpoint, tmp_path):
    ckpt, model = checkpoint
    pte = str(tmp_path / 'feats.pte')
    out = run_tool(TOOL, CONFIG, ckpt, pte, '--features', '--shape', str(H),
                   str(W))
    assert 'features' in out
    x = torch.randn(1, 3, H, W)
    feats = _pte_outputs(pte, x)
    # strides 16, 32, 64 with ceil rounding; T2 widths 144, 272, 368
    assert [f.shape for f in feats] == [(1, 144, 4, 3), (1, 272, 2, 2),
                                        (1, 368, 1, 1)]
    model.backbone.out_indices = (1, 2, 3)
    with torch.no_grad():
        refs = model.backbone(x)
    for got, ref in zip(feats, refs):
        ref = ref.numpy()
        assert np.abs(got - ref).max() <= 1e-4 * max(1., np.abs(ref).max())


def _int8_numbers(out: str):
    """(top-1 agreement %, [largest difference], [max |fp32|]) printed."""
    agree = re.search(r'top-1 agreement with fp32 PyTorch ([\d.]+) %', out)
    pairs = re.findall(r'largest (?:logit|output \d+) difference '
                       r'([\d.e+-]+) \(max \|fp32\| ([\d.e+-]+)\)', out)
    return ((float(agree.group(1)) if agree else None),
            [float(d) for d, _ in pairs], [float(s) for _, s in pairs])


@pytest.mark.slow
def test_int8_classifier(checkpoint, calib_dir, tmp_path):
    ckpt, _ = checkpoint
    pte = str(tmp_path / 't2_int8.pte')
    out = run_tool(TOOL, CONFIG, ckpt, pte, '--shape', str(H),
                   str(W), '--int8', '--calib-dir', calib_dir,
                   '--calib-num', '6')
    assert 'int8 (calibrated on 6 images; SS2D in float)' in out
    agree, diffs, scales = _int8_numbers(out)
    assert agree is not None and agree >= 50, out[-3000:]
    # int8 is an approximation, not a different model
    assert diffs and diffs[0] <= 0.25 * max(1., scales[0]), out[-3000:]
    # the export forms in the quantized program too: everything delegated,
    # in one piece, SS2D's float convolutions included
    assert _delegated_share(out) == 1.0, out[-3000:]
    assert 'left outside: none' in out
    assert 'in 1 delegated subgraphs' in out


@pytest.mark.slow
def test_int8_features(checkpoint, calib_dir, tmp_path):
    ckpt, _ = checkpoint
    pte = str(tmp_path / 'feats_int8.pte')
    out = run_tool(TOOL, CONFIG, ckpt, pte, '--features', '--shape', str(H),
                   str(W), '--int8', '--calib-dir', calib_dir,
                   '--calib-num', '4')
    _, diffs, scales = _int8_numbers(out)
    assert len(diffs) == 3, out[-3000:]
    for diff, scale in zip(diffs, scales):
        assert diff <= 0.25 * max(1., scale), out[-3000:]


def test_float_modules_keep_no_annotation():
    """XNNPACKQuantizer's ``cat`` annotator ignores the module filter: the
    quantizer of the int8 route drops every annotation inside a module kept
    in float, so a weight built with ``cat`` there stays float."""
    from torchao.quantization.pt2e.quantizer.quantizer import \
        Q_ANNOTATION_KEY

    from mmmobilemamba.deploy.xnnpack import _quantizer

    class Inner(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.randn(2, 4))
            self.b = torch.nn.Parameter(torch.randn(3, 4))

        def forward(self, x):
            weight = torch.cat([self.a, self.b])  # (5, 4)
            return torch.nn.functional.conv2d(x, weight[:, :, None, None])

    class Outer(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)
            self.inner = Inner()

        def forward(self, x):
            y = self.conv(x)
            return torch.cat([self.inner(y), y], dim=1)

    graph_module = torch.export.export(
        Outer().eval(), (torch.randn(1, 3, 8, 8), ),
        strict=False).module()
    _quantizer((Inner, )).annotate(graph_module)
    annotated = {}
    for node in graph_module.graph.nodes:
        stack = node.meta.get('nn_module_stack') or {}
        inside = any('Inner' in str(t) for _, t in stack.values())
        annotated.setdefault(inside, []).append(
            Q_ANNOTATION_KEY in node.meta)
    assert not any(annotated[True])  # the inner cat and conv: float
    assert any(annotated[False])  # the outer conv and cat: int8


def _fails(*args):
    code, out = run_tool(TOOL, *args, check=False)
    assert code != 0, out[-3000:]
    return out


def test_missing_calibration_folder(checkpoint, tmp_path):
    missing = str(tmp_path / 'nowhere')
    out = _fails(CONFIG, checkpoint[0], str(tmp_path / 'x.pte'), '--int8',
                 '--calib-dir', missing, '--shape', str(H), str(W))
    assert f'calibration folder {missing} not found' in out
    assert not osp.exists(tmp_path / 'x.pte')


def test_empty_calibration_folder(checkpoint, tmp_path):
    empty = tmp_path / 'empty'
    (empty / 'class_a').mkdir(parents=True)
    (empty / 'notes.txt').write_text('no images here')
    out = _fails(CONFIG, checkpoint[0], str(tmp_path / 'x.pte'), '--int8',
                 '--calib-dir', str(empty), '--shape', str(H), str(W))
    assert f'calibration folder {empty} holds no image' in out


def test_config_without_test_pipeline(checkpoint, calib_dir, tmp_path):
    config = tmp_path / 'no_pipeline.py'
    config.write_text(f'_base_ = {CONFIG!r}\n'
                      'test_dataloader = None\nval_dataloader = None\n'
                      'val_cfg = None\ntest_cfg = None\n'
                      'val_evaluator = None\ntest_evaluator = None\n')
    out = _fails(str(config), checkpoint[0], str(tmp_path / 'x.pte'),
                 '--int8', '--calib-dir', calib_dir, '--shape', str(H),
                 str(W))
    assert 'has no test_dataloader (or val_dataloader) pipeline' in out


def test_int8_needs_calibration_folder(checkpoint, tmp_path):
    out = _fails(CONFIG, checkpoint[0], str(tmp_path / 'x.pte'), '--int8')
    assert '--int8 needs --calib-dir DIR' in out


def test_unknown_runtime(tmp_path):
    from mmmobilemamba.deploy.runtimes import check_runtime, make_runner
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        make_runner('tflite', str(tmp_path / 'x.tflite'))
    assert check_runtime('executorch') == 'executorch'
    code, out = run_tool('tools/deployment/eval_deployed.py', CONFIG,
                         str(tmp_path / 'x.bin'), str(tmp_path),
                         '--runtime', 'tflite', check=False)
    assert code == 1 and "unknown runtime 'tflite'" in out
