"""Runtime-native scan kernels: the libraries that run the
``mmmobilemamba::selective_scan_native`` operator inside ONNX Runtime
(a custom-op domain) and ExecuTorch (a kernel library), for the files
exported with the ``'onnx-native'`` and ``'xnnpack-native'`` targets.

* :func:`native_library` returns the path of a runtime's library, to load
  in plain onnxruntime or executorch code (README, "Deploy");
* :mod:`.ops`: the operator in torch (what the exports record);
* :mod:`.onnxruntime`, :mod:`.executorch`: per runtime, how its library is
  built (headers from a registry package), checked and loaded;
* :mod:`.build`: the compiler call they share.

``python -m mmmobilemamba.deploy.native build`` builds the libraries
(``tools/install.sh`` runs it); where that is impossible (no compiler, no
headers) the portable targets still work and the native ones say why.
"""
import importlib
from typing import Dict, Optional

#: runtime name -> the module that builds and checks its library.
RUNTIMES: Dict[str, str] = {
    'onnxruntime': '.onnxruntime',
    'executorch': '.executorch',
}


class NativeLibraryError(RuntimeError):
    """A runtime's native library is missing, was built for another
    version of the runtime, or cannot be loaded."""


def runtime_module(runtime: str):
    """The module of ``runtime`` (a clear error for an unknown name)."""
    if runtime not in RUNTIMES:
        raise ValueError(f'unknown runtime {runtime!r} for native_library(); '
                         f'choose one of {sorted(RUNTIMES)}')
    return importlib.import_module(RUNTIMES[runtime], __name__)


def native_library(runtime: str) -> str:
    """The path of ``runtime``'s native scan library, checked against the
    installed runtime's version.

    Args:
        runtime (str): ``'onnxruntime'`` or ``'executorch'``.

    Returns:
        str: The shared library: for onnxruntime, pass it to
        ``SessionOptions.register_custom_ops_library``; for executorch, load
        it with ``ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)`` before
        loading the program.

    Raises:
        NativeLibraryError: The library is not built (the message names the
            command that builds it and why the install could not), or was
            built for another runtime version.
    """
    return runtime_module(runtime).library_path()


def unavailable(runtime: str) -> Optional[str]:
    """Why ``runtime``'s native library cannot be used here, or None."""
    try:
        native_library(runtime)
    except NativeLibraryError as e:
        return str(e)
    return None
