"""Operators that need only torch (and optionally triton / PyWavelets).

Nothing here imports an OpenMMLab package.
"""
from .selective_scan import (available_backends, selective_scan,
                             selective_scan_bidirectional)

__all__ = ['selective_scan', 'selective_scan_bidirectional',
           'available_backends']
