"""Selective scan (S6): one interface over a table of backends.

:mod:`.interface` holds :func:`selective_scan`,
:func:`selective_scan_bidirectional` and the custom operator;
:mod:`.backends` the table of what runs where and why, with the Triton
configurations. Beside them: the reference (:mod:`.reference`), the
portable form (:mod:`.portable`), the pure-PyTorch kernels
(:mod:`.torch_scan`, :mod:`.linear_recurrence`), the compiled CPU kernels'
binding (:mod:`.cpu`) and the Triton kernels (:mod:`.triton_scan`,
:mod:`.triton_kernels`). Importing the package registers the scan's FLOP
count with mmengine when it is installed, and says once (one log line)
when the compiled CPU kernels are not built.
"""
import logging

from ..complexity import register_flop_handles
from . import cpu
from .backends import (TRITON_CONFIGS, Backend, TritonConfig,
                       available_backends, backend_table, default_backend)
from .interface import (TritonFallbackWarning, selective_scan,
                        selective_scan_bidirectional)

register_flop_handles()  # no-op without mmengine
if cpu.MISSING is not None:
    logging.getLogger('mmmobilemamba').warning(
        'mmmobilemamba: %s; the pure-PyTorch selective scan is used instead',
        cpu.MISSING)

__all__ = [
    'selective_scan', 'selective_scan_bidirectional', 'backend_table',
    'available_backends', 'default_backend', 'Backend', 'TritonConfig',
    'TRITON_CONFIGS', 'TritonFallbackWarning'
]
