"""Deployment helpers shared by tools/deployment and the deploy benchmark.

* :mod:`.calibration`: images from a folder through a config's test
  pipeline, normalised as the model's data preprocessor does (the inputs of
  int8 calibration and of accuracy checks on exported models).
* :mod:`.xnnpack`: ``torch.export`` -> ExecuTorch program delegated to
  XNNPACK, fp32 or int8 (pt2e post-training quantization), and running a
  ``.pte`` file in ExecuTorch's runtime.
* :mod:`.quantize_onnx`: static int8 (QDQ) quantization of an ONNX file for
  onnxruntime.
* :mod:`.runtimes`: one call interface over the runtimes (``runner``).

Heavy dependencies (executorch, torchao, onnxruntime) are imported inside
the functions that need them.
"""
