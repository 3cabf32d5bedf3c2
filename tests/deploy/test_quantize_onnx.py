"""int8 for onnxruntime (export_onnx.py --int8) and the calibration images
both deploy tools read: static QDQ that quantizes only Conv/MatMul/Gemm,
close to fp32 PyTorch; the images normalised as the model's preprocessor
does."""
import os.path as osp
import re

import numpy as np
import pytest
import torch

from ..helpers import quantized_weight_consumers, run_tool
from .test_export_onnx import CONFIG
from .test_export_executorch import H, W, calib_dir, checkpoint  # noqa: F401

TOOL = 'tools/deployment/export_onnx.py'


@pytest.mark.slow
@pytest.mark.parametrize('features', [False, True])
def test_int8_onnx(checkpoint, calib_dir, tmp_path, features):  # noqa: F811
    ckpt, _ = checkpoint
    out_path = str(tmp_path / 'int8.onnx')
    extra = ['--features'] if features else []
    out = run_tool(TOOL, CONFIG, ckpt, out_path, '--shape', str(H), str(W),
                   '--int8', '--calib-dir', calib_dir, '--calib-num', '5',
                   *extra)
    # the fp32 model still passes its parity check beside the int8 one
    assert osp.isfile(str(tmp_path / 'int8_fp32.onnx'))
    worst = float(re.search(r'worst difference ([\d.e+-]+)', out).group(1))
    assert worst <= 1e-4
    pairs = re.findall(r'largest (?:logit|output \d+) difference '
                       r'([\d.e+-]+) \(max \|fp32\| ([\d.e+-]+)\)', out)
    assert len(pairs) == (3 if features else 1), out[-3000:]
    for diff, scale in pairs:
        assert float(diff) <= 0.25 * max(1., float(scale)), out[-3000:]
    if not features:
        agree = re.search(r'top-1 agreement with fp32 PyTorch ([\d.]+) %', out)
        assert agree and float(agree.group(1)) >= 50, out[-3000:]
    # only the matrix products are quantized: every quantized weight (a
    # DequantizeLinear of an initializer) feeds a Conv, MatMul or Gemm, and
    # the scan's elementwise Mul/Add/Pad keep float parameters
    fed = quantized_weight_consumers(out_path)
    assert 'Conv' in fed and fed <= {'Conv', 'MatMul', 'Gemm'}, fed


def test_onnx_int8_errors(checkpoint, tmp_path):  # noqa: F811
    missing = str(tmp_path / 'nowhere')
    code, out = run_tool(TOOL, CONFIG, checkpoint[0],
                         str(tmp_path / 'x.onnx'), '--int8', '--calib-dir',
                         missing, '--shape', str(H), str(W), check=False)
    assert code == 1 and f'calibration folder {missing} not found' in out
    assert not osp.exists(tmp_path / 'x.onnx')
    code, out = run_tool(TOOL, CONFIG, checkpoint[0],
                         str(tmp_path / 'x.onnx'), '--int8', check=False)
    assert code != 0 and '--int8 needs --calib-dir DIR' in out


def test_calibration_images_match_the_preprocessor(calib_dir):  # noqa: F811
    """load_images = test pipeline + the data preprocessor, as tools/test.py
    feeds the model."""
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from mmmobilemamba.deploy.calibration import (list_images, load_images,
                                                  spread)
    cfg = Config.fromfile(CONFIG)
    paths = spread(list_images(calib_dir), 3)
    assert len(paths) == 3 and len(set(paths)) == 3
    got = load_images(cfg, calib_dir, 3)
    assert got.shape == (3, 3, 192, 192) and got.dtype == torch.float32
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
        pre = MODELS.build(dict(cfg.data_preprocessor,
                                type='ClsDataPreprocessor'))
        batch = [pipeline(dict(img_path=p)) for p in paths]
        ref = pre(dict(inputs=[b['inputs'] for b in batch]))['inputs']
    assert np.abs(got.numpy() - ref.numpy()).max() < 1e-5
    resized = load_images(cfg, calib_dir, 2, size=(40, 56))
    assert resized.shape == (2, 3, 40, 56)
