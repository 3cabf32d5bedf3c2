"""The ExecuTorch kernel library of ``mmmobilemamba::selective_scan_native``
(``ops/csrc/et_scan.cpp``): built, checked and loaded here.

* :func:`build` compiles it at install time against the installed
  executorch wheel: its headers (``executorch/include``), ``libexecutorch.so``
  (which holds the kernel registry the Python runtime reads too) and
  ``libexecutorch_threadpool.so`` (the threadpool XNNPACK runs on; the scan
  splits its work on it). A JSON file beside the library records the
  executorch version: the kernel ABI follows it.
* :func:`library_path` returns the library, checked against the installed
  executorch.
* :func:`load` loads it (``ctypes.CDLL(path, mode=RTLD_GLOBAL)``, once per
  process): loading registers the kernel, and ``executorch.runtime`` then
  finds it when a program that calls the operator is loaded.
  :func:`uses_native_scan` tells whether a ``.pte`` file needs it.
"""
import ctypes
import importlib.util
import json
import mmap
import os
import time
from pathlib import Path
from typing import Dict, Optional, Union

from . import NativeLibraryError
from .build import CSRC, LIBRARY_DIR, BuildError, compile_shared

#: The library's file name and its build record, in :data:`LIBRARY_DIR`.
LIBRARY_NAME = 'libmmmobilemamba_et_scan.so'
INFO_NAME = 'executorch_scan.json'
#: The command that builds the library (named in every error).
BUILD_COMMAND = 'python -m mmmobilemamba.deploy.native build --runtime ' \
    'executorch'
#: The operator the library registers, as ExecuTorch programs name it.
OPERATOR = 'mmmobilemamba::selective_scan_native.out'
#: What the compiled headers of the wheel expect (its CMake config sets
#: the same definitions on its imported targets).
DEFINES = ('C10_USING_CUSTOM_GENERATED_MACROS', 'ET_EVENT_TRACER_ENABLED')

_loaded: Optional[str] = None  # the library this process loaded


def executorch_version() -> Optional[str]:
    """The installed executorch's version, or None when not installed."""
    from importlib import metadata
    try:
        return metadata.version('executorch')
    except metadata.PackageNotFoundError:
        return None


def wheel_paths() -> Dict[str, Path]:
    """The installed executorch wheel's folders: ``root``, ``include``,
    ``c10`` (its vendored c10 headers) and ``lib``.

    Raises:
        BuildError: executorch is not installed, or its package lacks the
            headers or libraries a kernel library is built against.
    """
    spec = importlib.util.find_spec('executorch')
    if spec is None or not spec.submodule_search_locations:
        raise BuildError('executorch is not installed (pip install '
                         'executorch)')
    root = Path(list(spec.submodule_search_locations)[0])
    paths = {
        'root': root,
        'include': root / 'include',
        'c10': root / 'include' / 'executorch' / 'runtime' / 'core' /
        'portable_type' / 'c10',
        'lib': root / 'lib',
    }
    needed = [
        paths['include'] / 'executorch' / 'extension' / 'kernel_util' /
        'make_boxed_from_unboxed_functor.h',
        paths['c10'] / 'c10' / 'util' / 'irange.h',
        paths['lib'] / 'libexecutorch.so',
    ]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise BuildError(f'the executorch package at {root} lacks '
                         f'{", ".join(missing)} (a wheel without headers or '
                         'libexecutorch.so cannot build kernel libraries)')
    return paths


def build(directory: Union[str, Path, None] = None,
          cxx: Optional[str] = None) -> Path:
    """Compile the kernel library and write its build record.

    Args:
        directory (str | Path, optional): Where to put them; defaults to
            :data:`LIBRARY_DIR` (where :func:`library_path` looks).
        cxx (str, optional): The compiler (default ``$CXX`` or ``g++``).

    Returns:
        Path: The library.

    Raises:
        BuildError: No executorch, no headers, no compiler, or the compile
            failed (with the compiler's output).
    """
    directory = Path(directory or LIBRARY_DIR)
    version = executorch_version()
    paths = wheel_paths()
    if version is None:
        raise BuildError('executorch is not installed (pip install '
                         'executorch)')
    libraries = ['executorch']
    defines = list(DEFINES)
    threadpool = (paths['lib'] / 'libexecutorch_threadpool.so').exists()
    if threadpool:  # else the scan runs in the calling thread
        libraries.append('executorch_threadpool')
        defines.append('ET_USE_THREADPOOL')
    out = directory / LIBRARY_NAME
    tmp = directory / f'.{LIBRARY_NAME}.{os.getpid()}.tmp'
    start = time.perf_counter()
    try:
        compile_shared([CSRC / 'et_scan.cpp'], tmp,
                       include_dirs=[paths['include'], paths['c10']],
                       library_dirs=[paths['lib']], libraries=libraries,
                       defines=defines, cxx=cxx)
        os.replace(tmp, out)  # a loaded old copy keeps its inode
    finally:
        if tmp.exists():
            tmp.unlink()
    info = {
        'runtime': 'executorch',
        'executorch_version': version,
        'library': LIBRARY_NAME,
        'operator': OPERATOR,
        'threadpool': threadpool,
        'build_seconds': round(time.perf_counter() - start, 1),
    }
    (directory / INFO_NAME).write_text(json.dumps(info, indent=2) + '\n')
    return out


def library_path(directory: Union[str, Path, None] = None) -> str:
    """The kernel library, checked against the installed executorch.

    Args:
        directory (str | Path, optional): Where :func:`build` put it;
            defaults to :data:`LIBRARY_DIR`.

    Raises:
        NativeLibraryError: executorch is not installed, the library is not
            built, or it was built for another executorch version (the
            message names :data:`BUILD_COMMAND`).
    """
    directory = Path(directory or LIBRARY_DIR)
    lib, info_file = directory / LIBRARY_NAME, directory / INFO_NAME
    version = executorch_version()
    if version is None:
        raise NativeLibraryError('executorch is not installed: the '
                                 "'xnnpack-native' programs need it "
                                 '(pip install executorch, then '
                                 f'{BUILD_COMMAND})')
    if not lib.exists() or not info_file.exists():
        raise NativeLibraryError(
            f'the ExecuTorch scan kernel library is not built ({lib} '
            f'missing); build it with `{BUILD_COMMAND}` (tools/install.sh '
            'runs it, and says why when it cannot: no g++, or an executorch '
            'wheel without headers)')
    try:
        info = json.loads(info_file.read_text())
        built_for = info['executorch_version']
    except (ValueError, KeyError, TypeError) as e:
        raise NativeLibraryError(f'unreadable build record {info_file} '
                                 f'({e}); rebuild with `{BUILD_COMMAND}`')
    if built_for != version:
        raise NativeLibraryError(
            f'the ExecuTorch scan kernel library {lib} was built for '
            f'executorch {built_for}, but executorch {version} is '
            f'installed (the kernel ABI follows the version); rebuild it '
            f'with `{BUILD_COMMAND}`')
    return str(lib)


def load(directory: Union[str, Path, None] = None) -> str:
    """Load the kernel library into this process (once), which registers
    ``mmmobilemamba::selective_scan_native.out`` with ExecuTorch's kernel
    registry; do it before loading a program that calls the operator.

    Returns:
        str: The loaded library's path.

    Raises:
        NativeLibraryError: See :func:`library_path`; also when another
            copy of the library is loaded already (ExecuTorch aborts the
            process on a second registration of one kernel name), or when
            the loader fails.
    """
    global _loaded
    path = library_path(directory)
    if _loaded is not None:
        if os.path.realpath(path) != os.path.realpath(_loaded):
            raise NativeLibraryError(
                f'the ExecuTorch scan kernels are loaded from {_loaded} '
                f'already; a second copy ({path}) cannot register them again')
        return _loaded
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise NativeLibraryError(f'cannot load {path} ({e}); rebuild it with '
                                 f'`{BUILD_COMMAND}`') from e
    _loaded = path
    return path


def loaded() -> Optional[str]:
    """The library this process loaded with :func:`load`, or None."""
    return _loaded


def uses_native_scan(program: Union[str, Path, bytes]) -> bool:
    """Whether an ExecuTorch program (a ``.pte`` path or its bytes) calls
    the native scan operator (its name is stored in the program's operator
    table)."""
    # the operator table stores the name and the overload ('out') apart
    needle = OPERATOR.split('.')[0].encode()
    if isinstance(program, (bytes, bytearray, memoryview)):
        return needle in bytes(program)
    with open(program, 'rb') as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(needle) >= 0
