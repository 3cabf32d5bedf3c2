"""FLOP count of the selective scan for mmengine's complexity analyzer.

mmengine's ``FlopAnalyzer`` traces the model with ``torch.jit.trace`` and
counts each traced node with a handle looked up by the node's kind. The
backends that run as the scan operator (``'cpp'``, ``'triton'``,
``'torch'``; :mod:`mmmobilemamba.ops.scan.backends`) appear as one node
``mmmobilemamba::selective_scan`` whichever of them ran, so they are counted
the same; ``'ref'`` and ``'portable'`` are standard ops, counted op by op.
mmengine 0.10.7 has no public way to add a handle to every analyzer, so
:func:`register_flop_handles` adds ours to the table analyzers copy their
handles from (``_DEFAULT_SUPPORTED_FLOP_OPS``); this is the only place that
touches it.

The count follows the MobileMamba paper's table: ``9 * B * L * D * N +
B * D * L`` for a scan over D channels (both directions together for the
two-direction scan) with N states, in the analyzer's unit
(multiply-accumulates). Importing this module needs only torch.
"""
from typing import Any, List

#: Node kind of the scan operator in a traced graph.
SCAN_OP = 'mmmobilemamba::selective_scan'


def scan_flops(batch: int, length: int, channels: int, n_state: int) -> int:
    """The paper's count for one scan: 9*B*L*D*N + B*D*L."""
    return 9 * batch * length * channels * n_state + batch * channels * length


def _shape(value: Any) -> List[int]:
    sizes = value.type().sizes()
    if sizes is None:
        raise ValueError('selective-scan FLOP handle: an input of the traced '
                         'scan has no static shape')
    return list(sizes)


def scan_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine handle for a traced scan node: its inputs start with u
    (batch, dim, L), delta and A (K, dim, N), and the count is over K * dim
    channels."""
    batch, _, length = _shape(inputs[0])
    k_dirs, dim, n_state = _shape(inputs[2])
    return scan_flops(batch, length, k_dirs * dim, n_state)


def register_flop_handles() -> bool:
    """Add the scan handle to mmengine's default FLOP handles.

    Returns:
        bool: True if registered, False when mmengine is not installed.
    """
    try:
        from mmengine.analysis import complexity_analysis
    except ImportError:
        return False
    complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS[SCAN_OP] = scan_flop_jit
    return True
