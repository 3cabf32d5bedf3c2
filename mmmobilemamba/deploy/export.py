"""``export(model, target, example, out)``: the one place that writes
runtime files (ONNX for onnxruntime, ``.pte`` for ExecuTorch/XNNPACK).

The model is converted for the target (:func:`.convert.convert`) and
traced on ``example``: ``'onnx'`` with the TorchScript-based
``torch.onnx.export`` (the portable scan is plain tensor code it traces
into a static graph, with an optional symbolic batch), ``'xnnpack'``
through ``torch.export`` and ExecuTorch's XNNPACK partitioner
(:mod:`.xnnpack`). int8: static QDQ quantization for onnxruntime
(:mod:`.quantize_onnx`), pt2e post-training quantization for XNNPACK.
Tools and benchmarks call this; none of them exports on its own.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Type

import torch
import torch.nn as nn

from .convert import convert

#: The targets :func:`export` writes files for, and their file endings.
#: The ``-native`` targets record SS2D's scan as one custom operator that
#: needs the runtime's native library (:mod:`.native`) to run.
FILE_TARGETS = {'onnx': '.onnx', 'xnnpack': '.pte',
                'onnx-native': '.onnx', 'xnnpack-native': '.pte'}


def float_onnx_path(out: str) -> str:
    """Where :func:`export` keeps the float model of an int8 ONNX ``out``."""
    return osp.splitext(out)[0] + '_fp32.onnx'


@dataclass
class Exported:
    """What :func:`export` wrote.

    Args:
        path (str): The model file (int8 when asked for).
        output_names (list[str]): Output names, in order.
        fp32_path (str, optional): The float ONNX file an int8 ONNX model
            was quantized from. Defaults to None.
        delegation (tuple, optional): :func:`.xnnpack.delegation` of a
            ``.pte`` program. Defaults to None.
    """
    path: str
    output_names: List[str]
    fp32_path: Optional[str] = None
    delegation: Optional[tuple] = field(default=None, repr=False)

    @property
    def num_bytes(self) -> int:
        return osp.getsize(self.path)


def export(model: nn.Module,
           target: str,
           example: torch.Tensor,
           out: str,
           *,
           output_names: Optional[Sequence[str]] = None,
           dynamic_batch: bool = False,
           opset: int = 17,
           calibration: Optional[torch.Tensor] = None,
           float_types: Iterable[Type[nn.Module]] = ()) -> Exported:
    """Convert ``model`` for ``target`` and write it to ``out``.

    Args:
        model (nn.Module): Takes one image tensor and returns a tensor or a
            tuple of tensors (see :class:`.model_source.Logits` and
            :class:`.model_source.Features` for OpenMMLab models). It is
            not modified.
        target (str): A key of :data:`FILE_TARGETS`.
        example (Tensor): An input of the exported shape.
        out (str): The file to write.
        output_names (Sequence[str], optional): Names of the outputs;
            default ``output0, output1, ...``. Defaults to None.
        dynamic_batch (bool): ONNX only: a symbolic batch dimension (H and
            W stay fixed: the scan's graph is specialised to the sequence
            length). Defaults to False.
        opset (int): ONNX opset. Defaults to 17.
        calibration (Tensor, optional): Normalised images (n, 3, H, W) to
            calibrate int8 on; None writes fp32. For ONNX the float model
            is kept beside ``out`` as ``<out>_fp32.onnx``. Defaults to None.
        float_types (Iterable[type]): XNNPACK int8 only: module types the
            quantizer leaves in float (e.g. SS2D). Defaults to ().

    Returns:
        Exported: The paths and names written.
    """
    if target not in FILE_TARGETS:
        raise ValueError(f'export writes files for {sorted(FILE_TARGETS)}, '
                         f'not {target!r}')
    onnx = FILE_TARGETS[target] == '.onnx'
    if dynamic_batch and not onnx:
        raise ValueError('dynamic_batch is for ONNX only (ExecuTorch '
                         'programs have a fixed batch)')
    module = convert(model, target)
    with torch.no_grad():
        probe = module(example)
    count = 1 if isinstance(probe, torch.Tensor) else len(probe)
    names = list(output_names or [f'output{i}' for i in range(count)])
    if len(names) != count:
        raise ValueError(f'{len(names)} output names {names} for a model '
                         f'with {count} outputs')
    if not onnx:
        from . import xnnpack

        # the quantizer matches exact classes: name the forms of float_types
        float_types = tuple({type(m) for m in module.modules()
                             if isinstance(m, tuple(float_types))})
        manager, report = xnnpack.export_program(module, example, calibration,
                                                 float_types)
        xnnpack.save(manager, out)
        return Exported(out, names, delegation=report)
    fp32 = out
    if calibration is not None:
        fp32 = float_onnx_path(out)
    axes = None
    if dynamic_batch:
        axes = {name: {0: 'batch'} for name in ['input'] + names}
    if target == 'onnx-native':  # the scan operator's ONNX node
        from .native.onnxruntime import register_symbolic
        register_symbolic(opset)
    with torch.no_grad():
        torch.onnx.export(module, (example, ), fp32, dynamo=False,
                          opset_version=opset, input_names=['input'],
                          output_names=names, dynamic_axes=axes,
                          do_constant_folding=True)
    if calibration is None:
        return Exported(out, names)
    from .quantize_onnx import quantize_static_int8
    quantize_static_int8(fp32, out, calibration)
    return Exported(out, names, fp32_path=fp32)
