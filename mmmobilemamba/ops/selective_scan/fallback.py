"""Fall back from the Triton kernels to another backend when they fail.

:func:`run_with_fallback` calls the Triton implementation of a scan. If it
fails to compile or launch (forward, or backward later in autograd) and
the backend was picked by default, it warns once, with the Triton error and
what to report, and this call and every later default call in the process
run on the fallback implementation instead. If the user asked for
``backend='triton'``, the error is raised as is.

Out-of-memory errors are never treated as a Triton failure: the fallback
would not have the memory either. While ``torch.compile`` traces, the Triton
implementation is called directly (no guard; the trace must stay simple).
"""
import warnings
from typing import Any, Callable, List, Optional, Tuple

import torch

_failure: Optional[str] = None  # the first Triton failure of this process

REPORT = ('Please report it to the mmmobilemamba issue tracker with this '
          'message, your GPU model, `pip show torch triton`, and the output '
          'of `python tools/analysis_tools/compile_triton.py --quick` (and '
          'of `tools/analysis_tools/check_gpu.py` if you can run it).')


class TritonFallbackWarning(RuntimeWarning):
    """The Triton kernels failed; the scan continues on the fallback."""


def triton_failure() -> Optional[str]:
    """The failure that switched default scans to the fallback, or None."""
    return _failure


def reset() -> None:
    """Forget an earlier failure: default scans try Triton again."""
    global _failure
    _failure = None


def _is_triton_failure(e: BaseException) -> bool:
    oom = getattr(torch, 'OutOfMemoryError', None) or getattr(
        torch.cuda, 'OutOfMemoryError', ())
    return isinstance(e, Exception) and not isinstance(e, oom)


def _switch_to_fallback(e: Exception) -> None:
    global _failure
    if _failure is not None:
        return
    where = ''
    if torch.cuda.is_available():
        try:
            major, minor = torch.cuda.get_device_capability()
            where = f' ({torch.cuda.get_device_name()}, sm_{major}{minor})'
        except Exception:  # noqa: BLE001 (the message is best effort)
            pass
    error = f'{type(e).__name__}: {e}'.strip()
    if len(error) > 3000:
        error = error[:3000] + ' [...]'
    _failure = error
    warnings.warn(
        f'selective scan: the Triton kernels failed on this GPU{where}; '
        "this and every later scan that did not ask for backend='triton' "
        "runs on the PyTorch backend ('torch'): same results, slower. "
        f'{REPORT} Pass backend=\'triton\' to raise the error instead, or '
        f"backend='torch' to skip Triton. Triton error:\n{error}",
        TritonFallbackWarning, stacklevel=3)


def _is_compiling() -> bool:
    compiler = getattr(torch, 'compiler', None)
    return bool(getattr(compiler, 'is_compiling', lambda: False)())


class _Call:
    """A scan call with its tensor arguments taken out (for autograd)."""

    def __init__(self, triton_fn, fallback_fn, explicit, args, kwargs):
        self.triton_fn, self.fallback_fn = triton_fn, fallback_fn
        self.explicit = explicit
        self.args, self.kwargs = list(args), dict(kwargs)
        self.slots: List[Tuple[str, Any]] = [
            ('a', i) for i, a in enumerate(args) if torch.is_tensor(a)] + [
            ('k', k) for k, v in kwargs.items() if torch.is_tensor(v)]

    def tensors(self) -> List[torch.Tensor]:
        return [self.args[i] if s == 'a' else self.kwargs[i]
                for s, i in self.slots]

    def run(self, fn: Callable, tensors: List[torch.Tensor]):
        args, kwargs = list(self.args), dict(self.kwargs)
        for (s, i), t in zip(self.slots, tensors):
            if s == 'a':
                args[i] = t
            else:
                kwargs[i] = t
        return fn(*args, **kwargs)


class _BackwardGuard(torch.autograd.Function):
    """Runs the Triton forward with its own graph, and its backward inside
    a guard: if that fails, the gradients come from the fallback."""

    @staticmethod
    def forward(ctx, call: _Call, *tensors):
        leaves = [t.detach().requires_grad_(need) for t, need in
                  zip(tensors, ctx.needs_input_grad[1:])]
        with torch.enable_grad():
            out = call.run(call.triton_fn, leaves)
        ctx.call, ctx.leaves = call, leaves
        ctx.outs = out if isinstance(out, tuple) else (out, )
        ctx.is_tuple = isinstance(out, tuple)
        res = tuple(o.detach() for o in ctx.outs)
        return res if ctx.is_tuple else res[0]

    @staticmethod
    def _grads(outs, leaves, needs, grads):
        wanted = [t for t, need in zip(leaves, needs) if need]
        pairs = [(o, g) for o, g in zip(outs, grads)
                 if g is not None and o.requires_grad]
        if not pairs or not wanted:
            return [None] * len(wanted)
        return torch.autograd.grad([o for o, _ in pairs], wanted,
                                   [g for _, g in pairs], allow_unused=True)

    @staticmethod
    def backward(ctx, *grads):
        call, needs = ctx.call, ctx.needs_input_grad[1:]
        try:
            got = _BackwardGuard._grads(ctx.outs, ctx.leaves, needs, grads)
        except Exception as e:  # noqa: BLE001 (re-raised unless Triton's)
            if call.explicit or not _is_triton_failure(e):
                raise
            _switch_to_fallback(e)
            leaves = [t.detach().requires_grad_(t.requires_grad)
                      for t in ctx.leaves]
            with torch.enable_grad():
                out = call.run(call.fallback_fn, leaves)
            outs = out if isinstance(out, tuple) else (out, )
            got = _BackwardGuard._grads(outs, leaves, needs, grads)
        ctx.outs = ctx.leaves = None
        it = iter(got)
        return (None, ) + tuple(next(it) if need else None for need in needs)


def run_with_fallback(triton_fn: Callable, fallback_fn: Callable,
                      explicit: bool, *args, **kwargs):
    """``triton_fn(*args, **kwargs)``, falling back to ``fallback_fn`` with
    the same arguments when Triton fails and ``explicit`` is False.

    Args:
        triton_fn (Callable): The Triton implementation (autograd-aware).
        fallback_fn (Callable): An implementation with the same signature
            and results (the ``'torch'`` backend).
        explicit (bool): True if the user asked for the Triton backend by
            name: then a failure is raised, never hidden.
    """
    if explicit or _is_compiling():
        return triton_fn(*args, **kwargs)
    if _failure is not None:
        return fallback_fn(*args, **kwargs)
    call = _Call(triton_fn, fallback_fn, explicit, args, kwargs)
    tensors = call.tensors()
    try:
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return _BackwardGuard.apply(call, *tensors)
        return triton_fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 (re-raised unless Triton's)
        if not _is_triton_failure(e):
            raise
        _switch_to_fallback(e)
        return fallback_fn(*args, **kwargs)
