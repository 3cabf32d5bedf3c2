"""Which graph a forward pass is building, and whether to use the forms
that a runtime's delegate takes (docs/architecture.md#export-forms).

Some computations have an equal form that an exporter lowers better: for
ExecuTorch's XNNPACK delegate, LayerNorm written as mean / rsqrt, softplus
as ``relu(x) + log(1 + exp(-|x|))``, slices instead of ``split`` and
``select``, 1x1 projections as convolutions. Modules branch on
:func:`delegate_forms`, which is True only while such a graph is being
built, so training and eager inference keep their own forms.

:data:`DELEGATE_FORM_TARGETS` is the rule, decided by measurement
(docs/deployment.md#delegation): the forms are used for ``torch.export``
(the route to ExecuTorch, where they put every operator of T2 into the
XNNPACK delegate) and for the TorchScript-based ONNX export, whose graph
onnxruntime also runs faster with them (T2@192, 1 thread: 10.8 ms against
13.2 ms).
"""
import contextlib
from typing import Iterator, Optional

import torch

#: The export targets that get the delegate forms: both, by measurement
#: (docs/deployment.md#delegation).
DELEGATE_FORM_TARGETS = frozenset({'torch.export', 'onnx'})
#: Every target :func:`export_target` can name.
TARGETS = ('torch.export', 'onnx')

_forced: Optional[str] = None


def export_target() -> Optional[str]:
    """``'torch.export'`` while ``torch.export`` traces (ExecuTorch's
    route), ``'onnx'`` while ``torch.onnx.export`` traces with TorchScript,
    None in eager mode (or the target forced by :func:`forms_of`)."""
    if _forced is not None:
        return _forced
    if torch.compiler.is_exporting():
        return 'torch.export'
    if torch.onnx.is_in_onnx_export():
        return 'onnx'
    return None


def delegate_forms() -> bool:
    """Whether the graph being built should use the delegate forms."""
    return export_target() in DELEGATE_FORM_TARGETS


@contextlib.contextmanager
def forms_of(target: str) -> Iterator[None]:
    """Run eager code with the forms of ``target``'s graph: what tests use
    to check an exported form against the training form by value.

    Args:
        target (str): One of :data:`TARGETS`.
    """
    global _forced
    if target not in TARGETS:
        raise ValueError(f'unknown export target {target!r}; expected one '
                         f'of {TARGETS}')
    previous, _forced = _forced, target
    try:
        yield
    finally:
        _forced = previous
