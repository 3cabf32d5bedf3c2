"""Static int8 quantization of an exported ONNX model for onnxruntime.

QDQ format, per-channel int8 weights, uint8 activations calibrated (min/max)
on real images. Only the operator types that profit from int8 are
quantized (:data:`OP_TYPES`): left to its defaults, onnxruntime's quantizer
would also wrap the selective scan's elementwise Mul/Add/Pad in
quantize/dequantize pairs, which costs time and puts the recurrence's decays
and states on an 8-bit grid. An ``'onnx-native'`` file's SelectiveScan
nodes stay float; its calibration runs with the native scan library.
"""
import contextlib
import os
import os.path as osp
import tempfile
from typing import Optional

import numpy as np
import torch

#: Operator types quantized: the matrix products that carry the FLOPs.
OP_TYPES = ('Conv', 'MatMul', 'Gemm')


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a tensor of images,
    fed at the model's (fixed or symbolic) batch size."""

    def __init__(self, images: torch.Tensor, name: str, batch: int) -> None:
        self.images = images.numpy().astype(np.float32)
        self.name = name
        self.batch = batch
        self.start = 0

    def get_next(self) -> Optional[dict]:
        if self.start + self.batch > len(self.images):
            return None
        part = self.images[self.start:self.start + self.batch]
        self.start += self.batch
        return {self.name: part}

    def rewind(self) -> None:
        self.start = 0


class _NativeOrt:
    """onnxruntime, as the quantizer's modules see it, with every new
    ``SessionOptions`` carrying the native scan library."""

    def __init__(self, ort, library: str) -> None:
        self._ort = ort
        self._library = library

    def __getattr__(self, name):
        return getattr(self._ort, name)

    def SessionOptions(self):  # noqa: N802 (onnxruntime's name)
        options = self._ort.SessionOptions()
        options.register_custom_ops_library(self._library)
        return options


@contextlib.contextmanager
def _native_sessions(fp32_path: str):
    """While quantizing an ``'onnx-native'`` file: the sessions onnxruntime's
    quantizer opens (graph optimisation, calibration) load the native scan
    library. Its API has no hook for session options, so the modules'
    ``onnxruntime`` (and ``SessionOptions``) names are swapped for the
    call; the SelectiveScan nodes stay float (not in :data:`OP_TYPES`)."""
    from .native import onnxruntime as native_ort
    if not native_ort.uses_native(fp32_path):
        yield
        return
    import onnxruntime
    from onnxruntime.quantization import calibrate, quant_utils
    from onnxruntime.quantization import shape_inference
    proxy = _NativeOrt(onnxruntime, native_ort.library_path())
    swaps = [(calibrate, 'onnxruntime', proxy),
             (shape_inference, 'onnxruntime', proxy),
             (quant_utils, 'SessionOptions', proxy.SessionOptions)]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in swaps
             if hasattr(mod, name)]
    try:
        for mod, name, value in swaps:
            if hasattr(mod, name):
                setattr(mod, name, value)
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def _input_batch(path: str) -> tuple:
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    inp = graph.input[0]
    dim = inp.type.tensor_type.shape.dim[0]
    return inp.name, (dim.dim_value if dim.HasField('dim_value') else 1)


def quantize_static_int8(fp32_path: str, out_path: str,
                         calibration: torch.Tensor) -> None:
    """Write the int8 (QDQ) version of ``fp32_path`` to ``out_path``.

    Args:
        fp32_path (str): The exported fp32 ONNX file.
        out_path (str): Where to write the quantized model.
        calibration (Tensor): Normalised images (n, 3, H, W), as the model
            takes them (see :mod:`mmmobilemamba.deploy.calibration`).
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quant_pre_process,
                                          quantize_static)
    name, batch = _input_batch(fp32_path)
    if calibration.shape[0] < batch:
        raise ValueError(f'{calibration.shape[0]} calibration images are '
                         f'fewer than the model\'s batch of {batch}')
    with tempfile.TemporaryDirectory() as tmp, _native_sessions(fp32_path):
        pre = osp.join(tmp, 'pre.onnx')
        # symbolic shape inference fails on the scan's graph; ONNX's own
        # shape inference and the graph optimisation still run
        quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
        quantize_static(
            pre, out_path, _Reader(calibration, name, batch),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(OP_TYPES),
            per_channel=True,
            # uint8 activations x int8 weights: the pair onnxruntime's x86
            # kernels fuse into QLinearConv / integer matmuls; with int8
            # activations the int8 models ran slower than fp32 here
            # (docs/deployment.md#speed)
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax)
    if not osp.isfile(out_path) or os.path.getsize(out_path) == 0:
        raise RuntimeError(f'onnxruntime wrote no model to {out_path}')


def count_quantized(path: str) -> dict:
    """Operator types of ``path`` and how many nodes each has: a check that
    only :data:`OP_TYPES` got quantize/dequantize pairs."""
    import onnx
    from collections import Counter
    graph = onnx.load(path).graph
    return dict(Counter(node.op_type for node in graph.node))


def report_int8(reference: torch.nn.Module, fp32_path: str, out_path: str,
                calibration: torch.Tensor, classifier: bool,
                check: bool = True) -> str:
    """Quantize ``fp32_path`` into ``out_path`` and, with ``check``, print
    how the int8 model's outputs on the calibration images compare with
    the fp32 PyTorch ``reference``; returns that summary ('' without)."""
    from .runtimes import (int8_summary, make_runner, run_batched,
                           torch_outputs)
    quantize_static_int8(fp32_path, out_path, calibration)
    ops = count_quantized(out_path)
    print(f'wrote {out_path} ({osp.getsize(out_path) / 2**20:.2f} MiB, int8 '
          f'QDQ, calibrated on {len(calibration)} images): '
          f'{ops.get("QuantizeLinear", 0)} QuantizeLinear, '
          f'{ops.get("DequantizeLinear", 0)} DequantizeLinear nodes')
    if not check:
        return ''
    _, batch = _input_batch(out_path)
    got = run_batched(make_runner('onnxruntime', out_path), calibration,
                      batch)
    ref = torch_outputs(reference, calibration)
    summary = int8_summary(ref, got, classifier)
    print('int8 onnxruntime vs fp32 PyTorch: ' + summary)
    return summary
