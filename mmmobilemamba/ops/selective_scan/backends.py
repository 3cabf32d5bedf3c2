"""The selective-scan backend table: one record per backend, in one place.

A record says what a backend is called, whether it can run on a device (or
why not), its one- and two-direction functions, its rank when the backend
is picked automatically, and which options it does not support (asking for
one raises; nothing falls back silently). Backends that implement the scan
custom operator (:mod:`.scan_op`) also give its forward and backward
kernels; their public functions are then the op itself, so ``torch.compile``
and ``torch.export`` see one op whichever of them runs, and the FLOP count
(:mod:`mmmobilemamba.ops.complexity`) is attached to that op.

==========  =======================================  ==========  =========
name        what                                     default on  via op
==========  =======================================  ==========  =========
``cpp``     compiled C++ kernels (``ops/csrc``)      cpu (1st)   yes
``triton``  Triton kernels                           cuda (1st)  yes
``torch``   pure PyTorch, runs anywhere              cpu, cuda   yes
``ref``     sequential loop, the ground truth        never       no
``export``  static standard-op graph for ONNX        never       no
==========  =======================================  ==========  =========

To add a backend: write its forward/backward in the op's layout (see
:mod:`.scan_op`), add a :class:`ScanBackend` record with :func:`op_backend`
(or with its own public functions), and pass it to
:func:`register_backend`.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch

from . import scan_op

from .cpp_scan import cpp_backward, cpp_forward, cpp_status
from .export_scan import (selective_scan_bidirectional_export,
                          selective_scan_export)
from .reference import selective_scan_bidirectional_ref, selective_scan_ref
from .torch_scan import torch_backward, torch_forward
from .triton_scan import triton_backward, triton_forward, triton_status

Status = Callable[[torch.device], Union[bool, str]]


@dataclass(frozen=True)
class ScanBackend:
    """One selective-scan backend.

    Args:
        name (str): What ``backend=`` selects.
        status (callable): ``status(device)`` is True when the backend can
            run on ``device``, else a string saying why not.
        one_direction (callable): Implements :func:`~.api.selective_scan`
            (inputs already validated).
        two_direction (callable): Implements
            :func:`~.api.selective_scan_bidirectional`.
        priority (dict): device type -> rank; the available backend of
            highest rank is the default. Absent: never a default.
        kernels (tuple, optional): (forward, backward) of the scan op, when
            the backend is one of its implementations.
        unsupported (dict): option -> why it is not supported; see
            :data:`OPTIONS`.
    """
    name: str
    status: Status
    one_direction: Callable
    two_direction: Callable
    priority: Mapping[str, int] = field(default_factory=dict)
    kernels: Optional[Tuple[Callable, Callable]] = None
    unsupported: Mapping[str, str] = field(default_factory=dict)


#: Options a backend may leave out (dispatch raises if one is asked for).
OPTIONS = ('return_last_state', 'z', 'grouped', 'n_state>1')


def op_backend(name: str, status: Status, forward: Callable,
               backward: Callable, priority: Mapping[str, int],
               unsupported: Optional[Mapping[str, str]] = None
               ) -> ScanBackend:
    """A record for a backend that implements the scan operator."""
    return ScanBackend(
        name, status,
        functools.partial(scan_op.scan_one_direction, backend=name),
        functools.partial(scan_op.scan_two_directions, backend=name),
        dict(priority), (forward, backward), dict(unsupported or {}))


def _always(device: torch.device) -> bool:
    return True


_TABLE: Dict[str, ScanBackend] = {}
#: (name, device type) -> status, asked once: statuses import modules
#: (triton) and must not be re-evaluated inside a compiled graph.
_STATUS: Dict[Tuple[str, str], Union[bool, str]] = {}
#: (name or None, device type, options) -> record, for choices that passed
#: :func:`resolve`'s checks: a scan call at batch 1 takes tens of
#: microseconds, and the choice is made on every call.
_RESOLVED: Dict[Tuple[Optional[str], str, Tuple[str, ...]], 'ScanBackend'] = {}


def register_backend(record: ScanBackend) -> None:
    """Add (or replace) a backend record."""
    for option in record.unsupported:
        if option not in OPTIONS:
            raise ValueError(f'unknown option {option!r}; options: {OPTIONS}')
    _TABLE[record.name] = record
    if record.kernels is not None:
        scan_op.KERNELS[record.name] = record.kernels
    for key in [k for k in _STATUS if k[0] == record.name]:
        del _STATUS[key]
    _RESOLVED.clear()


def backend_table() -> Dict[str, ScanBackend]:
    """A copy of the table, name -> record."""
    return dict(_TABLE)


def status(name: str, device: Union[str, torch.device]) -> Union[bool, str]:
    """True if backend ``name`` can run on ``device``, else why not."""
    device = torch.device(device)
    key = (name, device.type)
    if key not in _STATUS:
        _STATUS[key] = _TABLE[name].status(device)
    return _STATUS[key]


def available_backends(device: Union[str, torch.device] = 'cpu') -> list:
    """Names of the backends that can run on ``device``."""
    return [name for name in _TABLE if status(name, device) is True]


def default_backend(device: Union[str, torch.device]) -> str:
    """The available backend of highest priority on ``device``."""
    device = torch.device(device)
    ranked = sorted((r.priority[device.type], name)
                    for name, r in _TABLE.items()
                    if device.type in r.priority)
    for _, name in reversed(ranked):
        if status(name, device) is True:
            return name
    return 'ref'


def resolve(name: Optional[str], device: torch.device,
            options: Tuple[str, ...] = ()) -> ScanBackend:
    """The record of ``name`` (None: the default for ``device``), checked
    to run on ``device`` with ``options``; raises a clear error if not."""
    key = (name, device.type, options)
    record = _RESOLVED.get(key)
    if record is None or _TABLE.get(record.name) is not record:
        record = _RESOLVED[key] = _resolve(name, device, options)
    return record


def _resolve(name: Optional[str], device: torch.device,
             options: Tuple[str, ...]) -> ScanBackend:
    if name is None:
        name = default_backend(device)
    if name not in _TABLE:
        raise ValueError(f'unknown selective-scan backend {name!r}; '
                         f'choose one of {sorted(_TABLE)}')
    ok = status(name, device)
    if ok is not True:
        reason = ok if isinstance(ok, str) else 'not available'
        raise RuntimeError(f'selective-scan backend {name!r} cannot run on '
                           f'{device}: {reason}')
    record = _TABLE[name]
    for option in options:
        if option in record.unsupported:
            raise NotImplementedError(
                f'selective-scan backend {name!r} does not support '
                f'{option}: {record.unsupported[option]}')
    return record


for _record in (
        op_backend('cpp', cpp_status, cpp_forward, cpp_backward,
                   priority={'cpu': 30}),
        op_backend('triton', triton_status, triton_forward, triton_backward,
                   priority={'cuda': 30}),
        op_backend('torch', _always, torch_forward, torch_backward,
                   priority={'cpu': 20, 'cuda': 20}),
        ScanBackend('ref', _always, selective_scan_ref,
                    selective_scan_bidirectional_ref),
        ScanBackend('export', _always, selective_scan_export,
                    selective_scan_bidirectional_export),
):
    register_backend(_record)
