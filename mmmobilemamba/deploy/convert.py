"""``convert(model, target)``: the module tree in the form for one target.

The model that trains holds only its training form (:mod:`mmmobilemamba.
models`). An inference form is chosen here, once, by swapping modules, the
way ``torch.ao``'s prepare/convert and RepVGG-style re-parameterisation do:
nothing in a ``forward`` asks which form it is in.

A target is a sequence of passes (:mod:`.forms`); a pass maps module types
to rules, and a rule returns the module's replacement (or the module itself,
changed). Passes visit children before their parent, so a parent's rule
sees its children already converted.

==============  =========================================================
target          passes (what the form is for)
==============  =========================================================
``fused``       BatchNorms folded; runs anywhere (GPU, CPU, any dtype)
``eager-cpu``   fused + packed 1x1 products, the compiled depthwise op,
                channels-last maps, matrix-product wavelet (batch-1 CPU)
``onnx``        fused + the portable forms (standard operators, slices,
                the doubling scan), for ``torch.onnx.export``
``xnnpack``     the same forms, for ``torch.export`` -> ExecuTorch/XNNPACK
``*-native``    ``onnx`` / ``xnnpack`` with SS2D's scan as one runtime-native
                operator (:mod:`.native`: the ONNX Runtime custom-op and
                ExecuTorch kernel libraries; opt in)
==============  =========================================================

A new target is one file in :mod:`.forms` holding its pass, and one line in
:data:`TARGETS`.
"""
import copy
from typing import Dict, Tuple

import torch.nn as nn

from .forms import Pass, eager_cpu, fused, native, portable

#: target -> the passes that make its form, in order.
TARGETS: Dict[str, Tuple[Pass, ...]] = {
    'fused': (fused.PASS, ),
    'eager-cpu': (fused.PASS, eager_cpu.PASS),
    'onnx': (fused.PASS, portable.PASS),
    'xnnpack': (fused.PASS, portable.PASS),
    'onnx-native': (fused.PASS, portable.PASS, native.PASS),
    'xnnpack-native': (fused.PASS, portable.PASS, native.PASS),
}


def check_target(target: str) -> Tuple[Pass, ...]:
    """The passes of ``target``; a clear error for an unknown name."""
    if target not in TARGETS:
        raise ValueError(f'unknown deploy target {target!r}; choose one of '
                         f'{sorted(TARGETS)}')
    return TARGETS[target]


def convert(model: nn.Module, target: str, inplace: bool = False
            ) -> nn.Module:
    """``model`` in the form of ``target``, in eval mode.

    The result computes what the eval-mode training form computes (to
    float rounding); it is for inference only (BatchNorms are folded away).
    A module that no pass knows is kept as it is, so a whole detector or a
    foreign model converts too.

    Args:
        model (nn.Module): A model, or any module, in its training form (a
            model already converted for a target converts again as a no-op
            for the passes it has been through).
        target (str): A key of :data:`TARGETS`.
        inplace (bool): Convert ``model`` itself instead of a deep copy.
            Defaults to False.

    Returns:
        nn.Module: The converted model (``model`` itself when ``inplace``).
    """
    passes = check_target(target)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for form in passes:
        model = form.apply(model)
    return model.eval()


def count_converted(model: nn.Module, target: str) -> int:
    """How many modules of ``model`` (training form) the first pass of
    ``target`` would replace or change: 0 means the target does nothing to
    this model (e.g. no BatchNorm to fold)."""
    first = check_target(target)[0]
    return sum(1 for m in model.modules()
               if first.rule_for(m) is not None or (
                   first.fallback is not None
                   and callable(getattr(m, 'switch_to_deploy', None))))
