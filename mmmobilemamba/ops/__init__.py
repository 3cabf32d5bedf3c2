"""Operators that need only torch (and optionally triton / PyWavelets).

Nothing here imports an OpenMMLab package.
"""
import logging

from .depthwise_conv import depthwise_conv2d, depthwise_missing
from .scan import (available_backends, selective_scan,
                   selective_scan_bidirectional)

if depthwise_missing() is not None:
    logging.getLogger('mmmobilemamba').warning(
        'mmmobilemamba: %s; depthwise convolutions use F.conv2d instead',
        depthwise_missing())

__all__ = ['selective_scan', 'selective_scan_bidirectional',
           'available_backends', 'depthwise_conv2d']
