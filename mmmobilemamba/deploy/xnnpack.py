"""ExecuTorch programs delegated to XNNPACK, fp32 or int8.

Route: ``torch.export`` (non-strict: the model's Python control flow is
traced, not compiled) -> optional pt2e post-training quantization with
``XNNPACKQuantizer`` (symmetric int8, per-channel weights) ->
``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` ->
``to_executorch``. XNNPACK runs what it takes; whatever it does not take
stays in ExecuTorch's portable kernels, which :func:`delegation` lists.

The ``'xnnpack-native'`` programs hold SS2D's scan as the custom operator
``mmmobilemamba::selective_scan_native`` (:mod:`.native.ops`): XNNPACK does
not take it, so it stays between the delegated subgraphs (in float, also in
int8 programs: the quantizer annotates no custom operator), and
``to_executorch`` turns it into its ``.out`` overload, which the kernel
library of :mod:`.native.executorch` implements; :class:`PteRunner` loads
that library for such programs. An int8 program of that target is run
once on its example before it is handed back (:func:`check_runs`): at some
input sizes (T2: 64x64, 128x96, 192x192) the XNNPACK delegates of executorch
1.5.1 that end in an SS2D's float pre-scan projections on an odd feature
map (1x1, 4x3, 3x3) fail their shape propagation (also run alone), and
export then raises instead of writing a broken file.
"""
from collections import Counter
from typing import Iterable, List, Optional, Tuple, Type

import torch
import torch.nn as nn


def _quantizer(float_types: Iterable[Type[nn.Module]] = ()):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    float_types = tuple(float_types)

    class Quantizer(XNNPACKQuantizer):
        """``XNNPACKQuantizer`` whose float module types stay float for
        every operator: its ``cat`` annotator ignores the module filter
        and would quantize, for instance, the regrouped x-projection
        weight of SS2D's export form (per tensor)."""

        def annotate(self, model):
            model = super().annotate(model)
            keep_float(model, float_types)
            return model

    quantizer = Quantizer()
    quantizer.set_global(
        get_symmetric_quantization_config(is_per_channel=True))
    for module_type in float_types:
        quantizer.set_module_type(module_type, None)  # left in float
    return quantizer


def keep_float(graph_module, float_types: Iterable[Type[nn.Module]]) -> int:
    """Drop the quantization annotations of the nodes traced inside a
    module of one of ``float_types``: the quantizer then leaves them, and
    the weights they read, in float.

    Args:
        graph_module (GraphModule): Annotated by a pt2e quantizer.
        float_types (Iterable[type]): Module types to keep in float.

    Returns:
        int: How many annotations were dropped.
    """
    from torchao.quantization.pt2e.quantizer.quantizer import \
        Q_ANNOTATION_KEY
    names = {f'{t.__module__}.{t.__qualname__}' for t in float_types}
    dropped = 0
    for node in graph_module.graph.nodes:
        if Q_ANNOTATION_KEY not in node.meta:
            continue
        stack = node.meta.get('nn_module_stack') or {}
        types = set()
        for _, module_type in stack.values():
            if isinstance(module_type, type):
                module_type = f'{module_type.__module__}.' \
                    f'{module_type.__qualname__}'
            types.add(module_type)
        if types & names:
            del node.meta[Q_ANNOTATION_KEY]
            dropped += 1
    return dropped


def export_program(module: nn.Module, example: torch.Tensor,
                   calibration: Optional[torch.Tensor] = None,
                   float_types: Iterable[Type[nn.Module]] = ()):
    """Lower ``module`` to an ExecuTorch program delegated to XNNPACK.

    Args:
        module (nn.Module): Eval-mode model taking one image tensor.
        example (Tensor): Input of the exported shape (batch fixed).
        calibration (Tensor, optional): Images (n, 3, H, W) to calibrate an
            int8 program on; None exports fp32. Defaults to None.
        float_types (Iterable[type]): Module types the quantizer leaves in
            float (e.g. SS2D). Defaults to ().

    Returns:
        tuple: (ExecutorchProgramManager, :func:`delegation` of the lowered
        program); the first's ``.buffer`` is the ``.pte`` file's bytes.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import \
        XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    module = module.eval()
    if calibration is not None:
        return _export_int8(module, example, calibration, float_types)
    with torch.no_grad():
        program = torch.export.export(module, (example, ), strict=False)
        program = fold_constants(program)
        edge = to_edge_transform_and_lower(
            program, partitioner=[XnnpackPartitioner()])
        # read before to_executorch, which rewrites the graph in place
        report = delegation(edge)
        return edge.to_executorch(), report


def _export_int8(module, example, calibration, float_types):
    """The int8 branch of :func:`export_program`."""
    from mmmobilemamba.models.ss2d import SS2D
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import \
        XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    with torch.no_grad():
        program = torch.export.export(module, (example, ), strict=False)
        # constant weights for the quantizer: the regrouped weights of the
        # export forms are computed from parameters until folded, and a
        # computed weight is neither quantized ahead of time nor delegated
        program = fold_constants(program)
        from torchao.quantization.pt2e.quantize_pt2e import (convert_pt2e,
                                                             prepare_pt2e)
        prepared = prepare_pt2e(program.module(),
                                _quantizer(float_types))
        batch = example.shape[0]
        for start in range(0, calibration.shape[0] - batch + 1, batch):
            prepared(calibration[start:start + batch])
        converted = convert_pt2e(prepared)
        program = torch.export.export(converted, (example, ),
                                      strict=False)
        # the float weights of the export forms (SS2D's regrouped
        # projections) become constants, as in fp32; int8 weights stay int8
        program = fold_constants(program)
        edge = to_edge_transform_and_lower(
            program, partitioner=[XnnpackPartitioner()])
        report = delegation(edge)
        manager = edge.to_executorch()
    check_runs(manager, example, native='selective_scan_native' in report[2],
               ss2d_float=any(issubclass(t, SS2D) for t in float_types))
    return manager, report


#: (native scan, SS2D kept in float) -> what to do instead when an int8
#: program cannot run. XNNPACK (executorch 1.5.1) fails the int8 native
#: program with SS2D in float at some input sizes ('Propagating input
#: shapes failed', T2 at 192, 64 and 128x96), and the portable int8 program
#: with SS2D quantized at every size tried ('Failed to create squeeze
#: node'); the other two combinations ran at every size tried.
INT8_ADVICE = {
    (True, True): "quantize SS2D too (float_types=(), what the native "
                  "target's export tool does), or export fp32",
    (False, False): "keep SS2D in float (drop --quantize-ss2d), or use the "
                    "native scan ('xnnpack-native', --native-scan), where "
                    "SS2D quantized runs",
}


def check_runs(manager, example: torch.Tensor, native: bool = False,
               ss2d_float: bool = False) -> None:
    """Run an int8 program once on its example (with the native kernel
    library loaded where the program calls the native scan), so that
    :func:`export_program` never hands back a program that cannot run.

    Args:
        manager: The program (``.buffer``: its bytes).
        example (Tensor): Its input.
        native (bool): It calls the native scan. Defaults to False.
        ss2d_float (bool): SS2D was left in float. Defaults to False.

    Raises:
        RuntimeError: The program fails in ExecuTorch's runtime (names the
            limitation and what to export instead).
    """
    import os
    import tempfile

    from .native import NativeLibraryError
    fd, path = tempfile.mkstemp(suffix='.pte')
    os.close(fd)
    try:
        save(manager, path)
        try:
            PteRunner(path)(example)
        except NativeLibraryError:  # says itself how to build the library
            raise
        except Exception as e:  # the runtime raises plain RuntimeErrors
            target = 'xnnpack-native' if native else 'xnnpack'
            ss2d = 'in float' if ss2d_float else 'quantized'
            advice = INT8_ADVICE.get((native, ss2d_float), 'export fp32')
            raise RuntimeError(
                f'the int8 {target!r} program (SS2D {ss2d}) for input '
                f'{tuple(example.shape)} fails in ExecuTorch\'s runtime '
                f'({e}); XNNPACK cannot run it. Instead: {advice}.') from e
    finally:
        os.remove(path)


def fold_constants(program):
    """Fold what depends on weights only (the reshaped or regrouped weights
    of the delegate forms, ``-exp(A_logs)``, ...) into constants: XNNPACK
    takes a convolution or linear layer only with constant weights.
    Quantize/dequantize nodes are kept, so int8 weights stay int8
    (ExecuTorch's pass skips their edge-dialect forms only; this is the
    ATen dialect).

    Args:
        program (ExportedProgram): ATen-dialect program, changed in place.

    Returns:
        ExportedProgram: ``program``.
    """
    from executorch.exir.operator.util import _QUANT_PRIMITIVES
    from executorch.exir.passes.constant_prop_pass import (
        constant_prop_pass, get_default_skip_targets_no_quant)
    skip = set(get_default_skip_targets_no_quant()) | set(_QUANT_PRIMITIVES)
    skip.add(torch.ops.aten.full.default)
    tensors = list(program.state_dict.values())
    tensors += list(program.constants.values())
    original = set(program.constants)
    storages = {t.untyped_storage().data_ptr() for t in tensors
                if isinstance(t, torch.Tensor)}
    program = constant_prop_pass(program, custom_skip_targets=skip)
    for name, tensor in list(program.constants.items()):
        if name in original or not isinstance(tensor, torch.Tensor):
            continue
        # A fold that returns (a view of) its input, such as a no-op
        # ``.to()`` or ``flatten()``, yields a weight itself or a view of
        # it: unlifting the program wants plain tensors with their own
        # storage as constants.
        ptr = tensor.untyped_storage().data_ptr()
        tensor = tensor.detach()
        if ptr in storages:
            tensor = tensor.clone()
        storages.add(ptr)
        program.constants[name] = tensor
    return program


def _op_name(node) -> str:
    target = node.target
    name = getattr(target, '__name__', None) or str(target)
    for prefix in ('aten.', 'dim_order_ops.', 'quantized_decomposed.',
                   'mmmobilemamba.', 'mmmobilemamba::'):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.split('.')[0]  # drop the overload ('.default', '.Tensor')


#: Node targets that are bookkeeping, not computation.
_BOOKKEEPING = ('getitem', 'executorch_call_delegate', 'alloc')
#: Quantize/dequantize nodes: counted apart, they are not model operators.
_QDQ = ('quantize_per_tensor', 'dequantize_per_tensor',
        'quantize_per_channel', 'dequantize_per_channel',
        'choose_qparams_tensor')


def delegation(edge) -> Tuple[int, Counter, Counter]:
    """Operators inside and outside the XNNPACK delegate.

    Args:
        edge (EdgeProgramManager): The lowered program.

    Returns:
        tuple: (number of delegated subgraphs, Counter of delegated
        operators, Counter of operators left outside), by operator name;
        quantize/dequantize nodes are not counted.
    """
    graph_module = edge.exported_program().graph_module
    inside, outside = Counter(), Counter()
    subgraphs = 0
    for node in graph_module.graph.nodes:
        if node.op != 'call_function':
            continue
        name = _op_name(node)
        if name == 'executorch_call_delegate':
            subgraphs += 1
            lowered = getattr(graph_module, node.args[0].target)
            for inner in lowered.original_module.graph.nodes:
                if inner.op == 'call_function':
                    inner_name = _op_name(inner)
                    if inner_name not in _BOOKKEEPING + _QDQ:
                        inside[inner_name] += 1
        elif name not in _BOOKKEEPING + _QDQ:
            outside[name] += 1
    return subgraphs, inside, outside


def delegation_report(report) -> str:
    """Two lines: the delegated share and the operators left outside
    (``report`` is what :func:`delegation` returns)."""
    subgraphs, inside, outside = report
    n_in, n_out = sum(inside.values()), sum(outside.values())
    share = n_in / max(1, n_in + n_out)
    lines = [f'XNNPACK delegate: {n_in} of {n_in + n_out} operators '
             f'({100 * share:.1f} %) in {subgraphs} delegated subgraphs']
    if outside:
        left = ', '.join(f'{n} {op}' for op, n in outside.most_common())
        lines.append(f'left outside (portable kernels): {left}')
    else:
        lines.append('left outside: none')
    return '\n'.join(lines)


def save(manager, path: str) -> int:
    """Write the program's bytes to ``path``; return the size in bytes."""
    data = manager.buffer
    with open(path, 'wb') as f:
        f.write(data)
    return len(data)


def set_threads(num: int) -> None:
    """Size ExecuTorch's threadpool (XNNPACK's threads) to ``num``."""
    from executorch.extension.pybindings.portable_lib import \
        _unsafe_reset_threadpool
    _unsafe_reset_threadpool(int(num))


class PteRunner:
    """A ``.pte`` file loaded in ExecuTorch's runtime: ``runner(x)`` returns
    the outputs as a list of numpy arrays.

    A program of the ``'xnnpack-native'`` target calls the native scan
    operator: its kernel library is loaded first (:mod:`.native.executorch`;
    a :class:`.native.NativeLibraryError` says how to build it when it is
    missing)."""

    def __init__(self, path: str) -> None:
        from .native import executorch as native
        #: The native kernel library this program needed, or None.
        self.native_library = None
        if native.uses_native_scan(path):
            self.native_library = native.load()
        from executorch.runtime import Runtime
        self.program = Runtime.get().load_program(path)
        self.method = self.program.load_method('forward')

    def __call__(self, x) -> List:
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(x)
        outs = self.method.execute([x.contiguous()])
        return [o.numpy() if isinstance(o, torch.Tensor) else o
                for o in outs]
