"""ONNX Runtime's native scan: the ``mmmobilemamba::SelectiveScan`` and
``SelectiveScanNormGate`` custom ops of the ``'onnx-native'`` files.

* :func:`build` compiles ``ops/csrc/ort_scan.cpp`` into
  ``lib/libmmmobilemamba_ort.so`` against ONNX Runtime's C API header,
  and writes ``lib/onnxruntime.json`` beside it (the header's API version);
* :func:`library_path` checks that library against the installed
  onnxruntime; :func:`session_options` registers it into
  ``onnxruntime.SessionOptions``; :func:`uses_native` tells whether a model
  needs it;
* :func:`register_symbolic` makes ``torch.onnx.export`` (the TorchScript
  exporter) write ``selective_scan_native`` as one ``SelectiveScan`` node
  (its ``gated`` overload as one ``SelectiveScanNormGate`` node).

The headers: no Python or Debian package ships ``onnxruntime_c_api.h``,
nor does the official npm package (``onnxruntime-node`` carries only
binaries). :data:`HEADERS_PACKAGE`, an npm package of the ONNX Runtime
Unity plugin (MIT, ~150 MB: it bundles the runtime's binaries too), carries
the 1.29 headers. :func:`build` fetches it once with ``npm pack``, keeps
only the headers (:func:`headers_dir`, a few hundred KB under
``~/.cache/mmmobilemamba``) and never downloads again;
``$MMMOBILEMAMBA_ORT_HEADERS`` names a folder of headers to use instead
(offline installs).

Versions: the library asks the runtime for the header's API version, so it
loads in onnxruntime >= 1.<API version> (the OrtApi table only grows); in
an older runtime the load fails with a message naming both versions, and
:func:`library_path` says so before that.
"""
import json
import os
import os.path as osp
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Optional, Union

from . import NativeLibraryError
from .build import CSRC, LIBRARY_DIR, BuildError, compile_shared
from .ops import ONNX_DOMAIN, ONNX_GATED_OP_TYPE, ONNX_OP_TYPE, OP_NAME

#: The npm package (and version) whose tarball carries ONNX Runtime's C API
#: headers (onnxruntime 1.29, ORT_API_VERSION 29).
HEADERS_PACKAGE = 'com.github.asus4.onnxruntime@0.4.9'
#: The headers' folder inside that tarball.
HEADERS_IN_TARBALL = ('package/Plugins/iOS~/onnxruntime.xcframework/'
                      'ios-arm64/onnxruntime.framework/Headers/')
#: ``$MMMOBILEMAMBA_ORT_HEADERS``: a folder with ``onnxruntime_c_api.h``.
HEADERS_ENV = 'MMMOBILEMAMBA_ORT_HEADERS'
#: The library and its build record.
LIBRARY = LIBRARY_DIR / 'libmmmobilemamba_ort.so'
RECORD = LIBRARY_DIR / 'onnxruntime.json'
#: The command that builds the library (named by every error).
BUILD_COMMAND = 'python -m mmmobilemamba.deploy.native build --runtime ' \
    'onnxruntime'


# --------------------------------------------------------------------------
# headers


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mmmobilemamba`` (default ``~/.cache/...``)."""
    root = os.environ.get('XDG_CACHE_HOME') or osp.join(
        osp.expanduser('~'), '.cache')
    return Path(root) / 'mmmobilemamba'


def headers_dir(download: bool = True) -> Path:
    """The folder holding ``onnxruntime_c_api.h``: ``$MMMOBILEMAMBA_ORT_
    HEADERS``, else the cache, filled from :data:`HEADERS_PACKAGE` with
    ``npm pack`` when ``download``.

    Raises:
        BuildError: The headers are not there and cannot be fetched (no
            npm, no network, an unexpected tarball).
    """
    env = os.environ.get(HEADERS_ENV)
    if env:
        if not osp.isfile(osp.join(env, 'onnxruntime_c_api.h')):
            raise BuildError(f'${HEADERS_ENV}={env} holds no '
                             'onnxruntime_c_api.h')
        return Path(env)
    name = HEADERS_PACKAGE.replace('@', '-')
    cached = cache_dir() / 'onnxruntime-headers' / name
    if (cached / 'onnxruntime_c_api.h').is_file():
        return cached
    if not download:
        raise BuildError(f'ONNX Runtime headers not cached in {cached}')
    npm = shutil.which('npm')
    if npm is None:
        raise BuildError(
            'npm is not installed: the ONNX Runtime C API headers come from '
            f'the npm package {HEADERS_PACKAGE} (install Node.js/npm, or '
            f'set ${HEADERS_ENV} to a folder holding onnxruntime_c_api.h)')
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        # a private npm cache: the 150 MB tarball goes with the folder
        cmd = [npm, 'pack', HEADERS_PACKAGE, '--pack-destination', tmp,
               '--cache', osp.join(tmp, 'npm-cache'), '--silent']
        try:
            res = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=900)
        except subprocess.TimeoutExpired as e:
            raise BuildError(f'npm pack {HEADERS_PACKAGE} timed out') from e
        tarballs = [f for f in os.listdir(tmp) if f.endswith('.tgz')]
        if res.returncode != 0 or len(tarballs) != 1:
            raise BuildError(
                f'npm pack {HEADERS_PACKAGE} failed (exit {res.returncode}): '
                f'{(res.stderr or res.stdout).strip()[-2000:]}')
        staged = Path(tmp) / 'headers'
        staged.mkdir()
        found = False
        with tarfile.open(osp.join(tmp, tarballs[0]), 'r:gz') as tar:
            for member in tar:
                folder, _, base = member.name.rpartition('/')
                if (member.isfile() and folder + '/' == HEADERS_IN_TARBALL
                        and base.endswith('.h')) or \
                        member.name == 'package/LICENSE':
                    src = tar.extractfile(member)
                    (staged / base).write_bytes(src.read())
                    found |= base == 'onnxruntime_c_api.h'
        if not found:
            raise BuildError(f'{HEADERS_PACKAGE} holds no {HEADERS_IN_TARBALL}'
                             'onnxruntime_c_api.h')
        if not cached.exists():
            os.replace(staged, cached)
    return cached


def header_api_version(headers: Path) -> int:
    """``ORT_API_VERSION`` of the header in ``headers``."""
    text = (Path(headers) / 'onnxruntime_c_api.h').read_text(errors='replace')
    found = re.search(r'#define\s+ORT_API_VERSION\s+(\d+)', text)
    if found is None:
        raise BuildError(f'no ORT_API_VERSION in {headers}/'
                         'onnxruntime_c_api.h')
    return int(found.group(1))


# --------------------------------------------------------------------------
# build and check


def build(cxx: Optional[str] = None) -> str:
    """Build the custom-op library (fetching the headers if needed) and
    write its record; returns the library's path.

    Raises:
        BuildError: npm, the headers or the compiler are missing, or the
            compile failed (the message says which).
    """
    headers = headers_dir()
    api = header_api_version(headers)
    LIBRARY_DIR.mkdir(parents=True, exist_ok=True)
    tmp = LIBRARY.with_name(LIBRARY.name + f'.{os.getpid()}.tmp')
    try:
        compile_shared([CSRC / 'ort_scan.cpp'], tmp, include_dirs=[headers],
                       cxx=cxx)
        os.replace(tmp, LIBRARY)
    finally:
        if tmp.exists():
            tmp.unlink()
    record = {
        'library': LIBRARY.name,
        'ort_api_version': api,
        'min_onnxruntime': f'1.{api}',
        'headers': str(headers),
        'headers_package': None if os.environ.get(HEADERS_ENV)
        else HEADERS_PACKAGE,
        'machine': platform.machine(),
    }
    RECORD.write_text(json.dumps(record, indent=2) + '\n')
    return str(LIBRARY)


def _version(text: str) -> tuple:
    return tuple(int(p) for p in re.findall(r'\d+', text)[:2])


def installed_onnxruntime() -> Optional[str]:
    """The installed onnxruntime's version, or None."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    for dist in ('onnxruntime', 'onnxruntime-gpu', 'onnxruntime-openvino'):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    try:
        import onnxruntime
        return onnxruntime.__version__
    except ImportError:
        return None


def library_path() -> str:
    """The library's path, checked against the installed onnxruntime.

    Raises:
        NativeLibraryError: Not built, built for another machine, or for a
            newer onnxruntime than the installed one (each message names
            :data:`BUILD_COMMAND`).
    """
    if not LIBRARY.is_file() or not RECORD.is_file():
        raise NativeLibraryError(
            f'the onnxruntime native scan library is not built ({LIBRARY} '
            f'missing); build it with: {BUILD_COMMAND} (it needs npm and a '
            'C++ compiler; tools/install.sh runs it)')
    try:
        record = json.loads(RECORD.read_text())
        api = int(record['ort_api_version'])
    except (ValueError, KeyError, TypeError) as e:
        raise NativeLibraryError(
            f'{RECORD} is unreadable ({e}); rebuild the library with: '
            f'{BUILD_COMMAND}') from e
    machine = record.get('machine')
    if machine and machine != platform.machine():
        raise NativeLibraryError(
            f'{LIBRARY} was built for {machine}, this machine is '
            f'{platform.machine()}; rebuild it with: {BUILD_COMMAND}')
    installed = installed_onnxruntime()
    if installed is None:
        raise NativeLibraryError(
            'onnxruntime is not installed (pip install onnxruntime); the '
            'native scan library runs inside it')
    if _version(installed) < (1, api):
        raise NativeLibraryError(
            f'{LIBRARY} was built against the onnxruntime 1.{api} C API '
            f'(ORT_API_VERSION {api}) and needs onnxruntime >= 1.{api}, but '
            f'onnxruntime {installed} is installed; upgrade onnxruntime '
            f'(pip install -U onnxruntime) or rebuild the library against '
            f'older headers (${HEADERS_ENV}) with: {BUILD_COMMAND}')
    return str(LIBRARY)


# --------------------------------------------------------------------------
# sessions


def session_options(options=None, threads: Optional[int] = None):
    """``options`` (or a new ``onnxruntime.SessionOptions``) with the
    library registered, and ``threads`` intra-op threads if given.

    Raises:
        NativeLibraryError: See :func:`library_path`.
    """
    import onnxruntime as ort
    path = library_path()
    if options is None:
        options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    try:
        options.register_custom_ops_library(path)
    except Exception as e:  # onnxruntime raises its own Fail type
        raise NativeLibraryError(
            f'onnxruntime could not load {path}: {e}; rebuild it with: '
            f'{BUILD_COMMAND}') from e
    return options


def uses_native(model: Union[str, os.PathLike, bytes, 'onnx.ModelProto']
                ) -> bool:
    """Whether an ONNX model (a path, serialized bytes or a ModelProto) has
    a node in the ``mmmobilemamba`` domain (an ``'onnx-native'`` file)."""
    import onnx
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model), load_external_data=False)
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)

    def graph_uses(graph) -> bool:
        for node in graph.node:
            if node.domain == ONNX_DOMAIN:
                return True
            for attr in node.attribute:
                subs = list(attr.graphs) + ([attr.g] if attr.HasField('g')
                                             else [])
                if any(graph_uses(g) for g in subs):
                    return True
        return False

    return graph_uses(model.graph)


# --------------------------------------------------------------------------
# export

_registered = set()


def _symbolic(g, u, delta, A, B, C, D, bias, *gate):
    """Both overloads (a TorchScript node does not record which): the
    plain scan, or with (z, norm_weight, norm_bias, eps) the gated one."""
    if gate:
        from torch.onnx import symbolic_helper
        z, weight, norm_bias, eps = gate
        y = g.op(f'{ONNX_DOMAIN}::{ONNX_GATED_OP_TYPE}', u, delta, A, B, C, D,
                 bias, z, weight, norm_bias,
                 eps_f=symbolic_helper._get_const(eps, 'f', 'eps'))
    else:
        y = g.op(f'{ONNX_DOMAIN}::{ONNX_OP_TYPE}', u, delta, A, B, C, D,
                 bias)
    y.setType(u.type())  # y has u's shape and dtype
    return y


def register_symbolic(opset: int) -> None:
    """Let ``torch.onnx.export(..., dynamo=False, opset_version=opset)``
    write ``torch.ops.mmmobilemamba.selective_scan_native`` as one
    ``mmmobilemamba::SelectiveScan`` node (idempotent)."""
    if opset in _registered:
        return
    import torch
    torch.onnx.register_custom_op_symbolic(OP_NAME, _symbolic, opset)
    _registered.add(opset)
