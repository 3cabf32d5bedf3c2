"""One call interface over the deployment runtimes.

``runner = make_runner(runtime, path, threads)``; ``runner(x)`` takes a
float32 tensor or array (N, 3, H, W) and returns the outputs as numpy
arrays. ``threads=None`` keeps the runtime's default.
"""
import os.path as osp
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

#: Runtime names and the file ending each loads.
RUNTIMES = {'executorch': '.pte', 'onnxruntime': '.onnx'}
#: Runtime name -> the pip package that provides it.
PACKAGES = {'executorch': 'executorch', 'onnxruntime': 'onnxruntime'}


def require_runtime(name: str) -> None:
    """Raise an ImportError naming the package when runtime ``name`` is not
    installed."""
    import importlib.util
    check_runtime(name)
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None, say
        found = False
    if not found:
        raise ImportError(
            f'the {name} runtime needs the {PACKAGES[name]!r} package, which '
            f'is not installed; install it with: pip install '
            f'{PACKAGES[name]} (or run tools/install.sh)')


def check_runtime(name: str) -> str:
    """``name`` if it is a known runtime, else a ValueError listing them."""
    if name not in RUNTIMES:
        raise ValueError(f'unknown runtime {name!r}; expected one of '
                         f'{sorted(RUNTIMES)}')
    return name


def runtime_of(path: str) -> str:
    """The runtime that loads ``path``, from its file ending."""
    for name, ending in RUNTIMES.items():
        if path.endswith(ending):
            return name
    raise ValueError(f'cannot tell the runtime of {path}: expected a file '
                     f'ending in one of {sorted(RUNTIMES.values())}')


def ort_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session; its intra-op threads do not spin-wait
    after a run (spinning threads steal the cores of whatever runs next,
    which distorts interleaved timings). An ``'onnx-native'`` file gets the
    native scan library registered (:mod:`.native.onnxruntime`).

    Raises:
        NativeLibraryError: ``path`` needs the native scan library, which
            is not built or does not fit the installed onnxruntime (the
            message names the build command).
    """
    import onnxruntime as ort
    from .native import onnxruntime as native_ort
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if native_ort.uses_native(path):
        native_ort.session_options(opts)
    return ort.InferenceSession(path, sess_options=opts,
                                providers=['CPUExecutionProvider'])


def make_runner(runtime: str, path: str,
                threads: Optional[int] = None) -> Callable:
    """Load ``path`` in ``runtime``; see the module docstring.

    Raises:
        ValueError: For an unknown runtime.
        FileNotFoundError: If ``path`` does not exist.
        ImportError: If the runtime's package is not installed (the error
            names it).
    """
    check_runtime(runtime)
    if not osp.isfile(path):
        raise FileNotFoundError(f'model file {path} not found')
    require_runtime(runtime)
    if runtime == 'onnxruntime':
        session = ort_session(path, threads)
        name = session.get_inputs()[0].name

        def run_ort(x) -> List[np.ndarray]:
            x = x.numpy() if hasattr(x, 'numpy') else np.asarray(x)
            return session.run(None, {name: np.ascontiguousarray(
                x, dtype=np.float32)})

        run_ort.session = session
        return run_ort
    from .xnnpack import PteRunner, set_threads
    if threads is not None:
        set_threads(threads)
    return PteRunner(path)


def worst_difference(ref: List[np.ndarray], got: List[np.ndarray]) -> float:
    """Worst |got - ref| / max(1, max |ref|) over outputs."""
    if len(ref) != len(got):
        raise RuntimeError(f'the runtime returns {len(got)} outputs, '
                           f'PyTorch {len(ref)}')
    worst = 0.
    for r, g in zip(ref, got):
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            raise RuntimeError(f'output shape {g.shape} != PyTorch {r.shape}')
        worst = max(worst, float(np.abs(g - r).max()) /
                    max(1., float(np.abs(r).max())))
    return worst


def report_parity(runtime: str, worst: float, tolerance: float) -> int:
    """Print a runtime's worst difference to PyTorch; 1 (an exit code, with
    an error line on stderr) if it is over ``tolerance``, else 0."""
    import sys
    print(f'{runtime} vs PyTorch: worst difference {worst:.3g} (relative '
          f'to max(1, |output|); tolerance {tolerance})')
    if worst > tolerance:
        print(f'error: {runtime} output differs from PyTorch by {worst:.3g} '
              f'> {tolerance}', file=sys.stderr)
        return 1
    return 0


def int8_summary(ref: List[np.ndarray], got: List[np.ndarray],
                 classifier: bool) -> str:
    """How an int8 model's outputs on the calibration images compare with
    the fp32 PyTorch model's: top-1 agreement (classifier) and the largest
    absolute difference per output."""
    parts = []
    if classifier:
        agree = float((ref[0].argmax(1) == got[0].argmax(1)).mean())
        parts.append(f'top-1 agreement with fp32 PyTorch {100 * agree:.1f} % '
                     f'of {len(ref[0])} images')
    for i, (r, g) in enumerate(zip(ref, got)):
        what = 'logit' if classifier else f'output {i}'
        parts.append(f'largest {what} difference '
                     f'{float(np.abs(g - r).max()):.4g} (max |fp32| '
                     f'{float(np.abs(r).max()):.4g})')
    return '; '.join(parts)


def run_batched(runner, x, batch: int) -> List:
    """Run a fixed-batch runner over ``x`` in chunks of ``batch``; a last
    partial chunk is padded (with its last image) and trimmed."""
    chunks: Dict[int, list] = {}
    for start in range(0, x.shape[0], batch):
        part = x[start:start + batch]
        n = part.shape[0]
        if n < batch:
            part = torch.cat([part, part[-1:].expand(batch - n,
                                                     *part.shape[1:])])
        for i, out in enumerate(runner(part)):
            chunks.setdefault(i, []).append(out[:n])
    return [np.concatenate(chunks[i]) for i in sorted(chunks)]


def torch_outputs(module: torch.nn.Module, images) -> List[np.ndarray]:
    """PyTorch outputs of ``module`` image by image (batch 1, what the
    exported programs run), as numpy arrays concatenated per output."""
    outs: List[list] = []
    with torch.no_grad():
        for img in images:
            res = module(img[None])
            res = [res] if isinstance(res, torch.Tensor) else list(res)
            for i, r in enumerate(res):
                if len(outs) <= i:
                    outs.append([])
                outs[i].append(r.numpy())
    return [np.concatenate(o) for o in outs]


def input_batch(runtime: str, runner, images) -> int:
    """The batch size a loaded model takes: ExecuTorch programs are
    exported at batch 1; an ONNX model says (a symbolic batch takes all)."""
    if runtime == 'executorch':
        return 1
    dim = runner.session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else len(images)
