"""Selective scan (S6): reference, compiled CPU kernels, pure-PyTorch path,
Triton GPU kernels and an export form.

Every backend is one record of the table in :mod:`.backends` (what it is,
where it runs or why not, its default priority per device, what it does
not support). ``'cpp'``, ``'triton'`` and ``'torch'`` are implementations
of one custom operator (:mod:`.scan_op`). Importing this package also
registers the scan's FLOP count with mmengine's complexity analyzer when
mmengine is installed (see :mod:`mmmobilemamba.ops.complexity`) and, when
the compiled CPU kernels are not built, says so once (one log line).
"""
import logging

from ..complexity import register_flop_handles
from .api import selective_scan, selective_scan_bidirectional
from .backends import (ScanBackend, available_backends, backend_table,
                       default_backend, op_backend, register_backend)
from .cpp_scan import cpp_missing
from .export_scan import (selective_scan_bidirectional_export,
                          selective_scan_export)
from .reference import selective_scan_bidirectional_ref, selective_scan_ref
from .torch_scan import release_workspace, workspace_bytes

register_flop_handles()  # no-op without mmengine
if cpp_missing() is not None:
    logging.getLogger('mmmobilemamba').warning(
        'mmmobilemamba: %s; the pure-PyTorch selective scan is used instead',
        cpp_missing())

__all__ = [
    'selective_scan', 'selective_scan_bidirectional', 'selective_scan_ref',
    'selective_scan_bidirectional_ref', 'selective_scan_export',
    'selective_scan_bidirectional_export', 'available_backends',
    'default_backend', 'backend_table', 'register_backend', 'ScanBackend',
    'op_backend', 'workspace_bytes', 'release_workspace'
]
