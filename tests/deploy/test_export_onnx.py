"""tools/deployment/export_onnx.py as a user runs it: a MobileMamba-T2
classifier (BN-fused, symbolic batch, non-square input) and the backbone's
multi-scale features go to ONNX, and onnxruntime reproduces PyTorch."""
import os.path as osp
import re

import numpy as np
import pytest
import torch

from ..helpers import REPO, run_tool

CONFIG = osp.join(REPO, 'configs', 'mobilemamba',
                  'mobilemamba-t2_8xb128_in1k.py')
TOOL = 'tools/deployment/export_onnx.py'
H, W = 96, 64  # non-square, and small enough for CI


def _classifier():
    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.pop('train_cfg', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-like BNs: zero-init branches come alive
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + .5)
                m.running_mean.normal_(0, .1, generator=gen)
                m.running_var.copy_(
                    torch.rand(m.running_var.shape, generator=gen) + .5)
    return model.eval()


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    model = _classifier()
    path = str(tmp_path_factory.mktemp('onnx') / 't2.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path, model


def _worst(out: str) -> float:
    match = re.search(r'worst difference ([\d.e+-]+)', out)
    assert match, out[-3000:]
    return float(match.group(1))


def _only_standard_ops(path: str) -> None:
    import onnx
    graph = onnx.load(path).graph
    domains = {node.domain for node in graph.node}
    assert domains <= {'', 'ai.onnx'}, f'custom op domains {domains}'
    ops = {node.op_type for node in graph.node}
    # the scan: the doubling scan's Pads, softplus as Relu + Log(Exp + 1)
    assert {'Pad', 'Exp', 'Log', 'Relu'} <= ops, sorted(ops)


@pytest.mark.slow
def test_fused_classifier_dynamic_batch_non_square(checkpoint, tmp_path):
    ckpt, model = checkpoint
    onnx_path = str(tmp_path / 't2.onnx')
    out = run_tool(TOOL, CONFIG, ckpt, onnx_path, '--dynamic-batch',
                   '--shape', str(H), str(W))
    assert f'(N, 3, {H}, {W}) N symbolic' in out
    assert out.count('parity batch') == 2  # batches 1 and 3
    assert _worst(out) <= 1e-4
    _only_standard_ops(onnx_path)

    # Independently of the tool: onnxruntime vs the unfused PyTorch model.
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_path,
                                   providers=['CPUExecutionProvider'])
    for batch in (2, 5):
        x = torch.randn(batch, 3, H, W, generator=torch.Generator()
                        .manual_seed(batch))
        with torch.no_grad():
            ref = model(x, mode='tensor').numpy()
        got, = session.run(None, {'input': x.numpy()})
        assert got.shape == (batch, 1000)
        assert np.abs(got - ref).max() <= 1e-4 * max(1., np.abs(ref).max())
        # no mixing across the batch (the release's CPU defect)
        single, = session.run(None, {'input': x[:1].numpy()})
        assert np.abs(single[0] - got[0]).max() <= 1e-5 * max(
            1., np.abs(ref).max())


@pytest.mark.slow
def test_backbone_features(checkpoint, tmp_path):
    ckpt, model = checkpoint
    onnx_path = str(tmp_path / 't2_feats.onnx')
    out = run_tool(TOOL, CONFIG, ckpt, onnx_path, '--features', '--shape',
                   str(H), str(W), '--batch', '2')
    assert "outputs ['feat0', 'feat1', 'feat2']" in out
    assert _worst(out) <= 1e-4
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_path,
                                   providers=['CPUExecutionProvider'])
    x = torch.randn(2, 3, H, W)
    feats = session.run(None, {'input': x.numpy()})
    # strides 16, 32, 64 with ceil rounding; T2 widths 144, 272, 368
    assert [f.shape for f in feats] == [(2, 144, 6, 4), (2, 272, 3, 2),
                                        (2, 368, 2, 1)]
    model.backbone.out_indices = (1, 2, 3)
    with torch.no_grad():
        refs = model.backbone(x)
    for got, ref in zip(feats, refs):
        ref = ref.numpy()
        assert np.abs(got - ref).max() <= 1e-4 * max(1., np.abs(ref).max())


def test_missing_checkpoint_is_named(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    code, out = run_tool(TOOL, CONFIG, missing, str(tmp_path / 'x.onnx'),
                         check=False)
    assert code == 1
    assert f'checkpoint {missing} not found' in out
    assert not osp.exists(tmp_path / 'x.onnx')
