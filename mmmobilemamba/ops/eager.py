"""When an operator may skip its dispatch layers and call its kernel.

A ``torch.library`` custom op defined in Python costs tens of
microseconds per call in its wrappers, as much as a whole small problem
takes in the compiled kernels (batch-1 inference). Where nothing can
observe the difference (no autograd graph, no tracer, exporter or
dispatch mode) the kernels are called directly; everywhere else the op
is used, so ``torch.compile``, ``torch.export``, autograd and the FLOP
counters see it.
"""
from typing import Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode


def tracing() -> bool:
    """True while a compiler, tracer, exporter or dispatch mode watches."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting()
            or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or _get_current_dispatch_mode() is not None)


def eager_inference(*tensors: Optional[torch.Tensor]) -> bool:
    """True when no gradient is needed for ``tensors`` and nothing traces:
    a kernel may then be called without its op wrapper."""
    if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in tensors):
        return False
    return not tracing()
