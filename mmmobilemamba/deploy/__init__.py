"""Deployment: inference forms, runtime files, runtimes.

* :mod:`.convert`: ``convert(model, target)``, the module tree in the form
  of one target (the table of targets and their passes); the forms
  themselves are in :mod:`.forms`, one module per pass; :mod:`.fold` is the
  BatchNorm-folding arithmetic;
* :mod:`.export`: ``export(model, target, example, out)`` writes ONNX and
  ``.pte`` files (fp32 or int8), on :mod:`.xnnpack` (ExecuTorch/XNNPACK)
  and :mod:`.quantize_onnx` (onnxruntime QDQ);
* :mod:`.model_source`: the model to export, from a config and checkpoint;
* :mod:`.dense`: whole detectors and segmentors as one graph (box decoding
  and NMS, RoIAlign and masks, resize and argmax inside), with the
  metadata file written beside each model; :mod:`.host`: the numpy-only
  side a deployed file needs (host NMS for ``.pte`` detectors, reading
  metadata, drawing); :mod:`.backend_model`: an exported file evaluated by
  ``tools/test.py`` in place of the model;
* :mod:`.calibration`: images through a config's test pipeline (int8
  calibration, accuracy of exported files);
* :mod:`.runtimes`: one call interface over onnxruntime and ExecuTorch;
* :mod:`.native`: the runtime-native scan kernels of the ``'onnx-native'``
  and ``'xnnpack-native'`` targets; :func:`native_library` gives the
  library a runtime loads to run such a file.

Heavy dependencies (executorch, torchao, onnxruntime) are imported inside
the functions that need them.
"""
from .convert import TARGETS, convert
from .export import export
from .native import native_library

__all__ = ['TARGETS', 'convert', 'export', 'native_library']
