"""What the selective scan costs inside a model, by module swapping (the
models and the scan code are not patched).

* :func:`without_scan`: a copy whose SS2D modules skip the scan (y = u):
  what the model would cost, eager or exported, if its scan were free;
* :func:`timed_scan`: a copy whose SS2D modules time each scan call.
"""
import copy
import time
from typing import Callable, List, Type

import torch
import torch.nn as nn

from mmmobilemamba.deploy.forms import recast
from mmmobilemamba.models.ss2d import SS2D


def _swap_scans(model: nn.Module, make: Callable[[Type[SS2D]], Type[SS2D]]
                ) -> nn.Module:
    model = copy.deepcopy(model)
    found = 0
    for module in model.modules():
        if isinstance(module, SS2D):
            recast(module, make(type(module)))
            found += 1
    if not found:
        raise ValueError(f'{type(model).__name__} has no SS2D module: no '
                         'scan to measure')
    return model


def without_scan(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (any form) whose scans return their input."""

    def make(cls):
        return type(f'{cls.__name__}WithoutScan', (cls, ),
                    {'scan': lambda self, x: x})
    return _swap_scans(model, make)


def timed_scan(model: nn.Module, spent: List[float]) -> nn.Module:
    """A copy of ``model`` whose scans append their wall time (seconds,
    CUDA synchronised) to ``spent``."""

    def make(cls):
        def scan(self, x):
            cuda = x.device.type == 'cuda'
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            y = cls.scan(self, x)
            if cuda:
                torch.cuda.synchronize()
            spent.append(time.perf_counter() - start)
            return y
        return type(f'{cls.__name__}Timed', (cls, ), {'scan': scan})
    return _swap_scans(model, make)
