"""Selective scan (S6): reference, fast CPU path and Triton GPU kernels.

Importing this package registers the backends: ``'ref'`` (always),
``'torch'`` (always), ``'triton'`` (available where triton imports and the
tensors are on a CUDA device; otherwise it reports why not) and ``'export'``
(always; never a default: a static graph of standard ops for ONNX export). It also
registers the scan's FLOP count with mmengine's complexity analyzer when
mmengine is installed (see :mod:`mmmobilemamba.ops.complexity`).
"""
from ..complexity import register_flop_handles
from .api import (available_backends, default_backend, register_backend,
                  register_bidirectional_backend, selective_scan,
                  selective_scan_bidirectional)
from .export_scan import (selective_scan_bidirectional_export,
                          selective_scan_export)
from .reference import selective_scan_ref
from .torch_scan import (release_workspace,
                         selective_scan_bidirectional_torch,
                         selective_scan_torch, workspace_bytes)
from .triton_scan import (selective_scan_bidirectional_triton,
                          selective_scan_triton, triton_status)

register_backend('torch', lambda device: True, selective_scan_torch)
register_bidirectional_backend('torch', selective_scan_bidirectional_torch)
register_backend('triton', triton_status, selective_scan_triton)
register_bidirectional_backend('triton', selective_scan_bidirectional_triton)
register_backend('export', lambda device: True, selective_scan_export)
register_bidirectional_backend('export', selective_scan_bidirectional_export)
register_flop_handles()  # no-op without mmengine

__all__ = [
    'selective_scan', 'selective_scan_bidirectional', 'selective_scan_ref',
    'available_backends', 'default_backend', 'register_backend',
    'register_bidirectional_backend', 'workspace_bytes', 'release_workspace'
]
