"""Selective scan (S6): reference, fast CPU path and Triton GPU kernels."""
from .api import (available_backends, default_backend, register_backend,
                  register_bidirectional_backend, selective_scan,
                  selective_scan_bidirectional)
from .reference import selective_scan_ref

__all__ = [
    'selective_scan', 'selective_scan_bidirectional', 'selective_scan_ref',
    'available_backends', 'default_backend', 'register_backend',
    'register_bidirectional_backend'
]
