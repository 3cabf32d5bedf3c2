"""The selective-scan backend table: which kernel runs, where, when and why.

A call with ``backend=None`` runs the first row below whose ``default_on``
names the tensors' device type (``'*'``: any) and whose ``status`` is True
there; ``backend='name'`` runs that row or raises (unknown name:
ValueError; cannot run on the device: RuntimeError with the reason; an
option the row lists as unsupported: NotImplementedError). Rows with a
``backward`` kernel run inside the scan operator (:mod:`.interface`), so
``torch.compile``, ``torch.export`` and the FLOP counter see one
``mmmobilemamba::selective_scan`` node whichever of them runs; rows without
one are plain tensor code that autograd and exporters see op by op.

To add a kernel: one file with ``forward`` and ``backward`` in the kernels'
layout (:mod:`.interface`), and one row here.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch

from . import cpu, portable, reference, torch_scan, triton_scan


@dataclass(frozen=True)
class Backend:
    """One row of the table.

    Args:
        name (str): What ``backend=`` selects.
        default_on (tuple[str]): Device types it is the default for, in
            table order; ``'*'`` is any device; empty: never a default.
        status (callable): ``status(device)`` is True when it can run on
            ``device``, else a string saying why not.
        forward (callable): ``forward(u, delta, A, B, C, D, z, delta_bias,
            delta_softplus, return_last_state) -> (y, last state or None)``.
        backward (callable, optional): Gradients of every input; None for
            plain tensor code, which autograd differentiates. Defaults to
            None.
        fallback (str): Row that takes over, with one warning, when these
            kernels fail to compile or launch and the row was the default.
            Defaults to ''.
        unsupported (dict): Option ('return_last_state', 'z', 'grouped',
            'n_state>1') -> why it is not supported. Defaults to {}.
        why (str): Why the row exists and when it is the one that runs.
    """
    name: str
    default_on: Tuple[str, ...]
    status: Callable[[torch.device], Union[bool, str]]
    forward: Callable
    backward: Optional[Callable] = None
    fallback: str = ''
    unsupported: Mapping[str, str] = field(default_factory=dict)
    why: str = ''


def _anywhere(device: torch.device) -> bool:
    return True


TABLE: Dict[str, Backend] = {row.name: row for row in (
    Backend('cpp', ('cpu', ), cpu.status, cpu.forward, cpu.backward,
            why='compiled C++ kernels (ops/csrc/scan_*), AVX-512/AVX2/'
            'baseline copies picked at run time: the fastest on the CPU, '
            'where the extension was built'),
    Backend('triton', ('cuda', ), triton_scan.status, triton_scan.forward,
            triton_scan.backward, fallback='torch',
            why='fused Triton kernels (triton_kernels.py): the fastest on '
            'CUDA; when they fail to compile or launch on a GPU, default '
            "calls warn once and continue on 'torch'"),
    Backend('torch', ('*', ), _anywhere, torch_scan.forward,
            torch_scan.backward,
            why='chunked in-place recurrence in plain PyTorch ops with an '
            'explicit adjoint backward (torch_scan.py, linear_recurrence.py)'
            ': the fallback without the compiled kernels or a working '
            'triton, on any device; trains 2-3x faster than the portable '
            'form'),
    Backend('ref', (), _anywhere, reference.scan,
            why='a loop over time: the numeric truth of every test and '
            'the baseline of every benchmark; never a default'),
    Backend('portable', (), _anywhere, portable.scan,
            why='the portable form as plain standard ops in the operators '
            'XNNPACK takes: what ONNX and ExecuTorch exports record; the '
            "deploy converter sets it with set_scan_backend(model, "
            "'portable')"),
)}


@dataclass(frozen=True)
class TritonConfig:
    """Block sizes and warps of one Triton kernel.

    Args:
        block_d (int): Most channels per program (a power of two; also
            capped by the largest power of two dividing the group size,
            and so that 16 steps fit in the tile).
        tile (int): Elements of one (channels x states x steps) tile:
            BL = tile // (BD * NP) steps, at least 16.
        max_steps (int): Largest BL.
        num_warps (int): Warps per program.
    """
    block_d: int
    tile: int
    max_steps: int
    num_warps: int


#: (pass, dtype of u: 'fp32' or 'half' for fp16/bf16) -> configuration.
#: None spills registers on sm_80 or sm_90 at any MobileMamba shape
#: (``tools/analysis_tools/compile_triton.py``); 4096-element tiles with 4
#: warps spilled up to 1.7 KB per thread backwards, and 4096 with 8 warps
#: still a few bytes forwards. Not yet timed on a GPU, which may tell the
#: passes and dtypes apart.
TRITON_CONFIGS: Dict[Tuple[str, str], TritonConfig] = {
    ('forward', 'fp32'): TritonConfig(32, 2048, 128, 8),
    ('forward', 'half'): TritonConfig(32, 2048, 128, 8),
    ('backward', 'fp32'): TritonConfig(32, 2048, 128, 8),
    ('backward', 'half'): TritonConfig(32, 2048, 128, 8),
}

#: (name, device type) -> status; asked once (statuses import modules).
_STATUS: Dict[Tuple[str, str], Union[bool, str]] = {}
#: (name, device type, options) -> row, for choices that passed the
#: checks: the choice is made on every call, and a batch-1 scan takes
#: tens of microseconds.
_RESOLVED: Dict[tuple, Backend] = {}


def backend_table() -> Dict[str, Backend]:
    """A copy of the table, name -> row."""
    return dict(TABLE)


def status(name: str, device: Union[str, torch.device]) -> Union[bool, str]:
    """True if row ``name`` can run on ``device``, else why not."""
    device = torch.device(device)
    if (name, device.type) not in _STATUS:
        _STATUS[(name, device.type)] = TABLE[name].status(device)
    return _STATUS[(name, device.type)]


def available_backends(device: Union[str, torch.device] = 'cpu') -> list:
    """Names of the rows that can run on ``device``."""
    return [name for name in TABLE if status(name, device) is True]


def default_backend(device: Union[str, torch.device]) -> str:
    """The row a call with ``backend=None`` runs on ``device``."""
    device = torch.device(device)
    for name, row in TABLE.items():
        if ((device.type in row.default_on or '*' in row.default_on)
                and status(name, device) is True):
            return name
    return 'ref'


def resolve(name: Optional[str], device: torch.device,
            options: Tuple[str, ...] = ()) -> Backend:
    """The row of ``name`` (None: the default on ``device``), checked to
    run there with ``options``; raises with the reason if it cannot."""
    key = (name, device.type, options)
    row = _RESOLVED.get(key)
    if row is not None and TABLE.get(row.name) is row:
        return row
    name = default_backend(device) if name is None else name
    if name not in TABLE:
        raise ValueError(f'unknown selective-scan backend {name!r}; '
                         f'choose one of {sorted(TABLE)}')
    ok = status(name, device)
    if ok is not True:
        raise RuntimeError(f'selective-scan backend {name!r} cannot run on '
                           f'{device}: {ok or "not available"}')
    row = TABLE[name]
    for option in options:
        if option in row.unsupported:
            raise NotImplementedError(
                f'selective-scan backend {name!r} does not support '
                f'{option}: {row.unsupported[option]}')
    _RESOLVED[key] = row
    return row
