"""``x @ weight.T + bias`` with the weight kept in oneDNN's packed layout.

At batch 1 MobileMamba's 1x1 layers multiply a few tokens (9 on the 3x3
maps of T2's last stage) by weight matrices of up to a megabyte: the time
goes into reading and re-laying-out the weight on every call. oneDNN's
linear primitive with a weight packed once
(``torch.ops.mkldnn._reorder_linear_weight``, as ``torch.compile``'s CPU
backend uses it) skips the re-layout: T2@192 batch 1 runs 0.92x the time
of plain ``addmm`` at 1 thread, 0.96x at 2 (docs/benchmarks/speed.md).

The packed copy lives outside the module (not in its state_dict), keyed
by the weight tensor and repacked when the weight is modified in place or
replaced. It is used only on float32 CPU tensors that need no gradient; any
other call is ``torch.addmm`` / ``F.linear``.
"""
import weakref
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .depthwise_conv import no_grad_needed


_AVAILABLE = (torch.backends.mkldnn.is_available()
              and hasattr(torch.ops.mkldnn, '_reorder_linear_weight')
              and hasattr(torch.ops.mkldnn, '_linear_pointwise'))

# id(weight) -> (data_ptr, version, packed weight); an entry is dropped
# when its weight is garbage-collected (tensors compare by value, so they
# cannot be the keys of a WeakKeyDictionary).
_PACKED: Dict[int, Tuple[int, int, torch.Tensor]] = {}


def _packed(weight: torch.Tensor, rows: int) -> torch.Tensor:
    key, stamp = id(weight), (weight.data_ptr(), weight._version)
    entry = _PACKED.get(key)
    if entry is None:
        weakref.finalize(weight, _PACKED.pop, key, None)
    if entry is None or entry[:2] != stamp:
        packed = torch.ops.mkldnn._reorder_linear_weight(
            weight.detach().flatten(1), rows)
        entry = (*stamp, packed)
        _PACKED[key] = entry
    return entry[2]


def uses_packed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` takes the packed path for these tensors. The
    weight must be a stored parameter: a computed one (a LoRA
    parametrization's) is new at every access and would be repacked every
    call."""
    return (_AVAILABLE and isinstance(weight, torch.nn.Parameter)
            and x.device.type == 'cpu'
            and x.dtype == weight.dtype == torch.float32
            and no_grad_needed(x, weight))


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: Optional[torch.Tensor], relu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight.flatten(1), bias)`` for a 2-D ``x`` (rows,
    in_features), followed by a ReLU if ``relu`` (fused into the product on
    the packed path). ``weight`` is the parameter itself ((out, in) or a
    1x1 convolution's (out, in, 1, 1)): the packed copy is cached under
    it."""
    if uses_packed(x, weight):
        return torch.ops.mkldnn._linear_pointwise(
            x, _packed(weight, x.shape[0]), bias, 'relu' if relu else 'none',
            [], '')
    weight = weight.flatten(1)
    y = F.linear(x, weight) if bias is None else torch.addmm(
        bias, x, weight.t())
    return torch.relu(y) if relu else y


def packed_count() -> int:
    """How many packed weights are alive (for tests)."""
    return len(_PACKED)
